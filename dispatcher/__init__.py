"""The dispatcher process: drains the outbox to Socket.IO (and Web Push), runs scheduled jobs."""
