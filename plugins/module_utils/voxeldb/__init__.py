"""The world database toolkit: backup, restore, migrate, health check, chunk repair."""
