// Submits the form that carries a protocol answer (OIDC form_post, SAML POST) as soon as the
// page loads; without JavaScript the user presses its button.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("form-post");
  if (form) { form.submit(); }
});
