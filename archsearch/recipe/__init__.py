"""The declarations a space file makes: the recipe's dimensions, a planned architecture, the space."""
