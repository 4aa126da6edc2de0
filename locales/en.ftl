# Messages of the bridge's pages (Project Fluent syntax, https://projectfluent.org).
# Every message here must exist; other languages may leave some out (they show in English).
# Operators add or override languages with <language>.ftl files in [pages] locales_dir.

## Shared

# The site name in titles and headings when [pages] forum_name is not set.
site-name = Forum login
page-title = { $title } · { $site }
skip-to-content = Skip to the content
back-to-forum = Back to the forum
back-to-named-forum = Back to { $forum }
try-again = Try again
log-in-again = Log in again
use-another-account = Use another account
error-meta = Error { $status } · request id
contact = If you think this is wrong, contact { $contact }.
retry-after = { $seconds ->
    [one] You can try again in one second.
   *[other] You can try again in { $seconds } seconds.
}
logo-alt = { $forum } logo

## Error pages: a title and what happened, then the next step

bad-signature-title = Login request not trusted
bad-signature-message = The forum's login request carried a signature this login service does not accept: the forum and the login service are probably set up with different secrets. Please tell the forum's administrators; logging in again will not help.
forum-mismatch-title = The forum's configuration does not match
forum-mismatch-message = The forum sent this login to an address this login service is not set up for (for example www versus the bare domain, or http versus https). Please tell the forum's administrators; logging in again will not help.
bad-request-title = Invalid login request
bad-request-message = This login link is not valid. Go back to the forum and log in from there.
login-unknown-title = This login link was already used
login-unknown-message = This login was already finished or has expired, or it was opened in a different browser from the one that started it (or that browser blocks cookies). Please log in again from the forum.
login-expired-title = Your login took too long
login-expired-message = For your security a login has to be finished within { $minutes ->
    [one] one minute
   *[other] { $minutes } minutes
}. Please log in again.
login-rejected-title = This login could not be completed
login-rejected-message = The identity provider no longer accepts this login, usually because it took too long or was already used. Please log in again.
bad-callback-title = Invalid login response
bad-callback-message = The answer from the identity provider was incomplete. Please log in again.
login-cancelled-title = Login cancelled
login-cancelled-message = The login was cancelled at the identity provider, so you are not logged in to the forum.
login-refused-title = Login refused
login-refused-message = The identity provider refused the login. If this keeps happening, please tell the forum's administrators.
denied-title = Access denied
denied-message = Your account may not log in to this forum.
denied-reason = Reason: { $reason }
denied-switch-hint = Logged in with the wrong account? "Use another account" logs you out of your identity provider first, so you can choose again.
idp-unavailable-title = Identity provider unavailable
idp-unavailable-message = The identity provider could not be reached or gave an invalid answer. This is usually temporary; please try again in a moment.
not-ready-title = Login service starting
not-ready-message = The login service is still starting up. Please try again in a moment.
internal-title = Something went wrong
internal-message = The login service hit an internal error. Please try again; if it keeps happening, tell the forum's administrators and quote the request id below.
not-found-title = Page not found
not-found-message = There is no page at this address. Logins start at the forum.
method-not-allowed-title = Request not allowed here
method-not-allowed-message = This address does not accept this kind of request. Logins start at the forum.
rate-limited-title = Too many attempts
rate-limited-message = Too many requests came from your network in a short time. Please wait a moment.

## Logout

logged-out-title = You are logged out
logged-out-everywhere = You have been logged out of the forum and of your identity provider.
logged-out-forum = You have been logged out of the forum.
logged-out-unconfirmed = This page confirms a logout from the forum. To log in again, go back to the forum.
switch-account-manual = Your identity provider cannot be logged out from here. To use another account, log out at your identity provider, then log in to the forum again.
