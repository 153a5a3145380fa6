"""The deployment configurations (deploy/) run the system."""
