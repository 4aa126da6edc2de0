# Textos en español de las páginas del puente (sintaxis de Project Fluent).

## Comunes

site-name = Acceso al foro
page-title = { $title } · { $site }
skip-to-content = Ir al contenido
back-to-forum = Volver al foro
back-to-named-forum = Volver a { $forum }
try-again = Intentar de nuevo
log-in-again = Iniciar sesión de nuevo
use-another-account = Usar otra cuenta
error-meta = Error { $status } · id de solicitud
contact = Si cree que es un error, contacte con { $contact }.
retry-after = { $seconds ->
    [one] Puede intentarlo de nuevo en un segundo.
   *[other] Puede intentarlo de nuevo en { $seconds } segundos.
}
logo-alt = Logotipo de { $forum }

## Páginas de error

bad-signature-title = Solicitud de inicio de sesión no fiable
bad-signature-message = La solicitud de inicio de sesión del foro lleva una firma que este servicio no acepta: probablemente el foro y el servicio de inicio de sesión usan secretos distintos. Avise a los administradores del foro; volver a iniciar sesión no servirá.
forum-mismatch-title = La configuración del foro no coincide
forum-mismatch-message = El foro envió este inicio de sesión a una dirección para la que este servicio no está configurado (por ejemplo, con o sin www, o http en lugar de https). Avise a los administradores del foro; volver a iniciar sesión no servirá.
bad-request-title = Solicitud de inicio de sesión no válida
bad-request-message = Este enlace de inicio de sesión no es válido. Vuelva al foro e inicie sesión desde allí.
login-unknown-title = Este enlace de inicio de sesión ya se usó
login-unknown-message = Este inicio de sesión ya terminó o caducó, o se abrió en un navegador distinto del que lo empezó (o ese navegador bloquea las cookies). Inicie sesión de nuevo desde el foro.
login-expired-title = Su inicio de sesión tardó demasiado
login-expired-message = Por su seguridad, un inicio de sesión debe completarse en { $minutes ->
    [one] un minuto
   *[other] { $minutes } minutos
}. Inicie sesión de nuevo.
login-rejected-title = No se pudo completar este inicio de sesión
login-rejected-message = El proveedor de identidad ya no acepta este inicio de sesión, normalmente porque tardó demasiado o ya se usó. Inicie sesión de nuevo.
bad-callback-title = Respuesta de inicio de sesión no válida
bad-callback-message = La respuesta del proveedor de identidad estaba incompleta. Inicie sesión de nuevo.
login-cancelled-title = Inicio de sesión cancelado
login-cancelled-message = El inicio de sesión se canceló en el proveedor de identidad; no ha iniciado sesión en el foro.
login-refused-title = Inicio de sesión rechazado
login-refused-message = El proveedor de identidad rechazó el inicio de sesión. Si vuelve a ocurrir, avise a los administradores del foro.
denied-title = Acceso denegado
denied-message = Su cuenta no puede iniciar sesión en este foro.
denied-reason = Motivo: { $reason }
denied-switch-hint = ¿Inició sesión con la cuenta equivocada? «Usar otra cuenta» cierra primero su sesión en el proveedor de identidad para que pueda elegir otra.
idp-unavailable-title = Proveedor de identidad no disponible
idp-unavailable-message = No se pudo contactar con el proveedor de identidad o su respuesta no era válida. Suele ser temporal; inténtelo de nuevo en un momento.
not-ready-title = El servicio de inicio de sesión está arrancando
not-ready-message = El servicio de inicio de sesión todavía está arrancando. Inténtelo de nuevo en un momento.
internal-title = Algo salió mal
internal-message = El servicio de inicio de sesión sufrió un error interno. Inténtelo de nuevo; si se repite, avise a los administradores del foro indicando el id de solicitud de abajo.
not-found-title = Página no encontrada
not-found-message = No hay ninguna página en esta dirección. Los inicios de sesión empiezan en el foro.
method-not-allowed-title = Solicitud no permitida aquí
method-not-allowed-message = Esta dirección no acepta este tipo de solicitud. Los inicios de sesión empiezan en el foro.
rate-limited-title = Demasiados intentos
rate-limited-message = Llegaron demasiadas solicitudes desde su red en poco tiempo. Espere un momento.

## Cierre de sesión

logged-out-title = Ha cerrado la sesión
logged-out-everywhere = Ha cerrado la sesión en el foro y en su proveedor de identidad.
logged-out-forum = Ha cerrado la sesión en el foro.
logged-out-unconfirmed = Esta página confirma un cierre de sesión en el foro. Para volver a entrar, vuelva al foro.
switch-account-manual = Su proveedor de identidad no permite cerrar la sesión desde aquí. Para usar otra cuenta, cierre la sesión en su proveedor de identidad y vuelva a iniciar sesión en el foro.
