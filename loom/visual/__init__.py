"""Visual replacement: follow a placeholder's box, remove what was there, draw the new name or logo."""
