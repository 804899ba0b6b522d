"""Backups and the restore test: the backup policy against AWS, a real restore, its validation and cleanup."""
