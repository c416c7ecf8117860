"""What people see and use: the summary, progress lines, the report and its figures, the export, predictions."""
