"""guestlab: self-grading Linux virtualization labs."""

__version__ = "0.1.0"
