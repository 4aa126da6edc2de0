# Deutsche Texte der Seiten der Bridge (Project-Fluent-Syntax).

## Allgemein

site-name = Forum-Anmeldung
page-title = { $title } · { $site }
skip-to-content = Zum Inhalt springen
back-to-forum = Zurück zum Forum
back-to-named-forum = Zurück zu { $forum }
try-again = Erneut versuchen
log-in-again = Erneut anmelden
use-another-account = Anderes Konto verwenden
error-meta = Fehler { $status } · Anfrage-ID
contact = Wenn Sie das für einen Fehler halten, wenden Sie sich an { $contact }.
retry-after = { $seconds ->
    [one] Sie können es in einer Sekunde erneut versuchen.
   *[other] Sie können es in { $seconds } Sekunden erneut versuchen.
}
logo-alt = Logo von { $forum }

## Fehlerseiten

bad-signature-title = Anmeldeanfrage nicht vertrauenswürdig
bad-signature-message = Die Anmeldeanfrage des Forums trägt eine Signatur, die dieser Anmeldedienst nicht akzeptiert: Forum und Anmeldedienst sind vermutlich mit unterschiedlichen Geheimnissen eingerichtet. Bitte informieren Sie die Administratoren des Forums; eine erneute Anmeldung hilft nicht.
forum-mismatch-title = Die Konfiguration des Forums passt nicht
forum-mismatch-message = Das Forum hat diese Anmeldung an eine Adresse geschickt, für die dieser Anmeldedienst nicht eingerichtet ist (zum Beispiel mit oder ohne www, http statt https). Bitte informieren Sie die Administratoren des Forums; eine erneute Anmeldung hilft nicht.
bad-request-title = Ungültige Anmeldeanfrage
bad-request-message = Dieser Anmeldelink ist ungültig. Kehren Sie zum Forum zurück und melden Sie sich dort an.
login-unknown-title = Dieser Anmeldelink wurde bereits verwendet
login-unknown-message = Diese Anmeldung wurde bereits abgeschlossen oder ist abgelaufen, oder sie wurde in einem anderen Browser geöffnet als dem, in dem sie begann (oder dieser Browser blockiert Cookies). Bitte melden Sie sich erneut über das Forum an.
login-expired-title = Ihre Anmeldung hat zu lange gedauert
login-expired-message = Zu Ihrer Sicherheit muss eine Anmeldung innerhalb von { $minutes ->
    [one] einer Minute
   *[other] { $minutes } Minuten
} abgeschlossen werden. Bitte melden Sie sich erneut an.
login-rejected-title = Diese Anmeldung konnte nicht abgeschlossen werden
login-rejected-message = Der Identitätsanbieter akzeptiert diese Anmeldung nicht mehr, meist weil sie zu lange gedauert hat oder bereits verwendet wurde. Bitte melden Sie sich erneut an.
bad-callback-title = Ungültige Anmeldeantwort
bad-callback-message = Die Antwort des Identitätsanbieters war unvollständig. Bitte melden Sie sich erneut an.
login-cancelled-title = Anmeldung abgebrochen
login-cancelled-message = Die Anmeldung wurde beim Identitätsanbieter abgebrochen; Sie sind nicht im Forum angemeldet.
login-refused-title = Anmeldung abgelehnt
login-refused-message = Der Identitätsanbieter hat die Anmeldung abgelehnt. Wenn das wiederholt passiert, informieren Sie bitte die Administratoren des Forums.
denied-title = Zugriff verweigert
denied-message = Ihr Konto darf sich nicht in diesem Forum anmelden.
denied-reason = Grund: { $reason }
denied-switch-hint = Mit dem falschen Konto angemeldet? „Anderes Konto verwenden“ meldet Sie zuerst beim Identitätsanbieter ab, damit Sie neu wählen können.
idp-unavailable-title = Identitätsanbieter nicht erreichbar
idp-unavailable-message = Der Identitätsanbieter war nicht erreichbar oder hat ungültig geantwortet. Das ist meist vorübergehend; bitte versuchen Sie es gleich noch einmal.
not-ready-title = Anmeldedienst startet
not-ready-message = Der Anmeldedienst startet noch. Bitte versuchen Sie es gleich noch einmal.
internal-title = Etwas ist schiefgelaufen
internal-message = Im Anmeldedienst ist ein interner Fehler aufgetreten. Bitte versuchen Sie es erneut; wenn es wiederholt passiert, informieren Sie die Administratoren des Forums und nennen Sie die Anfrage-ID unten.
not-found-title = Seite nicht gefunden
not-found-message = Unter dieser Adresse gibt es keine Seite. Anmeldungen beginnen im Forum.
method-not-allowed-title = Anfrage hier nicht erlaubt
method-not-allowed-message = Diese Adresse nimmt diese Art von Anfrage nicht an. Anmeldungen beginnen im Forum.
rate-limited-title = Zu viele Versuche
rate-limited-message = Aus Ihrem Netzwerk kamen in kurzer Zeit zu viele Anfragen. Bitte warten Sie einen Moment.

## Abmeldung

logged-out-title = Sie sind abgemeldet
logged-out-everywhere = Sie wurden vom Forum und von Ihrem Identitätsanbieter abgemeldet.
logged-out-forum = Sie wurden vom Forum abgemeldet.
logged-out-unconfirmed = Diese Seite bestätigt eine Abmeldung vom Forum. Um sich wieder anzumelden, kehren Sie zum Forum zurück.
switch-account-manual = Ihr Identitätsanbieter kann von hier aus nicht abgemeldet werden. Um ein anderes Konto zu verwenden, melden Sie sich beim Identitätsanbieter ab und danach erneut im Forum an.
