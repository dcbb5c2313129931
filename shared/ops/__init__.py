"""What ops watch: health and poison-queue records."""
