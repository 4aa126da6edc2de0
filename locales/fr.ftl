# Textes français des pages de la passerelle (syntaxe Project Fluent).

## Commun

site-name = Connexion au forum
page-title = { $title } · { $site }
skip-to-content = Aller au contenu
back-to-forum = Retour au forum
back-to-named-forum = Retour à { $forum }
try-again = Réessayer
log-in-again = Se reconnecter
use-another-account = Utiliser un autre compte
error-meta = Erreur { $status } · identifiant de requête
contact = Si vous pensez qu’il s’agit d’une erreur, contactez { $contact }.
retry-after = { $seconds ->
    [one] Vous pourrez réessayer dans une seconde.
   *[other] Vous pourrez réessayer dans { $seconds } secondes.
}
logo-alt = Logo de { $forum }

## Pages d’erreur

bad-signature-title = Demande de connexion non fiable
bad-signature-message = La demande de connexion du forum porte une signature que ce service de connexion n’accepte pas : le forum et le service de connexion utilisent sans doute des secrets différents. Merci de prévenir les administrateurs du forum ; se reconnecter n’y changera rien.
forum-mismatch-title = La configuration du forum ne correspond pas
forum-mismatch-message = Le forum a envoyé cette connexion vers une adresse pour laquelle ce service de connexion n’est pas configuré (par exemple avec ou sans www, ou http au lieu de https). Merci de prévenir les administrateurs du forum ; se reconnecter n’y changera rien.
bad-request-title = Demande de connexion invalide
bad-request-message = Ce lien de connexion n’est pas valide. Retournez au forum et connectez-vous depuis celui-ci.
login-unknown-title = Ce lien de connexion a déjà été utilisé
login-unknown-message = Cette connexion est déjà terminée ou a expiré, ou elle a été ouverte dans un autre navigateur que celui où elle a commencé (ou ce navigateur bloque les cookies). Veuillez vous reconnecter depuis le forum.
login-expired-title = Votre connexion a pris trop de temps
login-expired-message = Pour votre sécurité, une connexion doit être terminée en moins { $minutes ->
    [one] d’une minute
   *[other] de { $minutes } minutes
}. Veuillez vous reconnecter.
login-rejected-title = Cette connexion n’a pas pu aboutir
login-rejected-message = Le fournisseur d’identité n’accepte plus cette connexion, généralement parce qu’elle a pris trop de temps ou a déjà été utilisée. Veuillez vous reconnecter.
bad-callback-title = Réponse de connexion invalide
bad-callback-message = La réponse du fournisseur d’identité était incomplète. Veuillez vous reconnecter.
login-cancelled-title = Connexion annulée
login-cancelled-message = La connexion a été annulée chez le fournisseur d’identité ; vous n’êtes pas connecté au forum.
login-refused-title = Connexion refusée
login-refused-message = Le fournisseur d’identité a refusé la connexion. Si cela se reproduit, merci de prévenir les administrateurs du forum.
denied-title = Accès refusé
denied-message = Votre compte n’est pas autorisé à se connecter à ce forum.
denied-reason = Raison : { $reason }
denied-switch-hint = Connecté avec le mauvais compte ? « Utiliser un autre compte » vous déconnecte d’abord du fournisseur d’identité pour que vous puissiez en choisir un autre.
idp-unavailable-title = Fournisseur d’identité indisponible
idp-unavailable-message = Le fournisseur d’identité n’a pas pu être joint ou a donné une réponse invalide. C’est généralement temporaire ; veuillez réessayer dans un instant.
not-ready-title = Service de connexion en démarrage
not-ready-message = Le service de connexion est encore en train de démarrer. Veuillez réessayer dans un instant.
internal-title = Une erreur s’est produite
internal-message = Le service de connexion a rencontré une erreur interne. Veuillez réessayer ; si cela se reproduit, prévenez les administrateurs du forum en indiquant l’identifiant de requête ci-dessous.
not-found-title = Page introuvable
not-found-message = Il n’y a pas de page à cette adresse. Les connexions commencent sur le forum.
method-not-allowed-title = Requête non autorisée ici
method-not-allowed-message = Cette adresse n’accepte pas ce type de requête. Les connexions commencent sur le forum.
rate-limited-title = Trop de tentatives
rate-limited-message = Trop de requêtes sont venues de votre réseau en peu de temps. Veuillez patienter un instant.

## Déconnexion

logged-out-title = Vous êtes déconnecté
logged-out-everywhere = Vous avez été déconnecté du forum et de votre fournisseur d’identité.
logged-out-forum = Vous avez été déconnecté du forum.
logged-out-unconfirmed = Cette page confirme une déconnexion du forum. Pour vous reconnecter, retournez au forum.
switch-account-manual = Votre fournisseur d’identité ne peut pas être déconnecté d’ici. Pour utiliser un autre compte, déconnectez-vous chez votre fournisseur d’identité, puis reconnectez-vous au forum.
