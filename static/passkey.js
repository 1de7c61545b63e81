// The passkey pages: asks the browser for a new passkey (data-ceremony="create") or for a
// passkey's signature (data-ceremony="get") with the options the server put on the form,
// and sends the answer back in the form's `credential` field. WebAuthn's binary fields
// travel as base64url both ways, as the server's library expects.
(function () {
  "use strict";
  var form = document.getElementById("passkey-form");
  if (!form) { return; }

  function fromB64url(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toB64url(buf) {
    var bytes = new Uint8Array(buf);
    var s = "";
    for (var i = 0; i < bytes.length; i++) { s += String.fromCharCode(bytes[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    pk.user.id = fromB64url(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
    return { publicKey: pk };
  }

  function created(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        attestationObject: toB64url(r.attestationObject),
        clientDataJSON: toB64url(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : []
      }
    };
  }

  function asserted(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        authenticatorData: toB64url(r.authenticatorData),
        clientDataJSON: toB64url(r.clientDataJSON),
        signature: toB64url(r.signature),
        userHandle: r.userHandle ? toB64url(r.userHandle) : null
      }
    };
  }

  function failed() {
    var note = document.getElementById("passkey-browser-error");
    if (note) { note.hidden = false; }
  }

  form.addEventListener("submit", function (event) {
    var field = form.querySelector("input[name=credential]");
    if (field.value) { return; }
    event.preventDefault();
    if (!window.PublicKeyCredential || !navigator.credentials) { failed(); return; }
    var options = JSON.parse(form.dataset.options);
    var create = form.dataset.ceremony === "create";
    var asked = create
      ? navigator.credentials.create(creationOptions(options))
      : navigator.credentials.get(requestOptions(options));
    asked.then(function (cred) {
      field.value = JSON.stringify(create ? created(cred) : asserted(cred));
      form.submit();
    }, failed);
  });
}());
