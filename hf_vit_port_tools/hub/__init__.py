"""Publishing: the model cards of converted and trained repos, and the one-commit push to the Hub."""
