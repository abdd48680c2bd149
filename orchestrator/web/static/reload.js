// The Strict cookie was withheld on a navigation another site started: ask again, once,
// as a same-site request (the flag stops a loop if the cookie never comes).
if (!sessionStorage.getItem("guestlab-reloaded")) {
  sessionStorage.setItem("guestlab-reloaded", "1");
  location.replace("/seat");
}
