"""The scenario library that ships with guestlab: scenarios/ and the files in labs/."""
