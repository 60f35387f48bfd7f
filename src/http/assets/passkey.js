(function () {
  "use strict";
  // The pages' one script: the "Use your passkey" buttons. Without
  // WebAuthn (or without JavaScript) they stay hidden and the forms work
  // as they are.
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }
  function bytes(text) {
    return Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), function (c) {
      return c.charCodeAt(0);
    });
  }
  function encode(buffer) {
    var s = "";
    new Uint8Array(buffer).forEach(function (b) {
      s += String.fromCharCode(b);
    });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  async function requestOptions(button) {
    if (button.dataset.options) {
      return JSON.parse(button.dataset.options);
    }
    var response = await fetch(button.dataset.begin, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
      credentials: "same-origin"
    });
    if (!response.ok) {
      throw new Error("passkey sign-in could not start: " + response.status);
    }
    var started = await response.json();
    button.form.elements.passkey_ceremony.value = started.ceremony;
    return started.webauthn;
  }
  document.querySelectorAll("button[data-passkey]").forEach(function (button) {
    var status = document.getElementById("passkey-status");
    button.hidden = false;
    button.addEventListener("click", async function () {
      button.disabled = true;
      if (status) {
        status.hidden = true;
      }
      try {
        var publicKey = (await requestOptions(button)).publicKey;
        publicKey.challenge = bytes(publicKey.challenge);
        (publicKey.allowCredentials || []).forEach(function (c) {
          c.id = bytes(c.id);
        });
        var credential = await navigator.credentials.get({ publicKey: publicKey });
        var r = credential.response;
        button.form.elements.webauthn.value = JSON.stringify({
          id: credential.id,
          rawId: encode(credential.rawId),
          type: credential.type,
          response: {
            authenticatorData: encode(r.authenticatorData),
            clientDataJSON: encode(r.clientDataJSON),
            signature: encode(r.signature),
            userHandle: r.userHandle ? encode(r.userHandle) : null
          },
          extensions: credential.getClientExtensionResults()
        });
        button.form.submit();
      } catch (error) {
        button.disabled = false;
        if (status) {
          status.hidden = false;
        }
      }
    });
  });
})();
