"""The student's seat: credentials, and the doors (web, SSH) they open into one lab."""
