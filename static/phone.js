// Sesam demo "phone": this page acts as the MFA app in a browser. It speaks the real app API
// (/api/app/v1, docs/app-api.md) with a non-extractable WebCrypto P-256 key kept in IndexedDB.
"use strict";
(() => {
  const API = "/api/app/v1";
  const POLL_MS = 2000;
  const PROOF_TYP = "sesam-proof+jwt";

  // ---------------------------------------------------------------------------------------
  // The proof (pure helpers; also exposed as globalThis.SesamPhone for tests).

  const encoder = new TextEncoder();
  const utf8 = (text) => encoder.encode(text);

  /** base64url without padding, of bytes (ArrayBuffer or Uint8Array). */
  function b64u(bytes) {
    const array = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    let binary = "";
    for (let i = 0; i < array.length; i += 1) binary += String.fromCharCode(array[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  const b64uJson = (value) => b64u(utf8(JSON.stringify(value)));

  /** base64url(SHA-256(utf8(text))): the proof's bh. */
  async function bodyHash(text) {
    return b64u(await crypto.subtle.digest("SHA-256", utf8(text)));
  }

  /** A fresh proof id: 24 random bytes, 32 base64url characters. */
  function newJti() {
    const bytes = new Uint8Array(24);
    crypto.getRandomValues(bytes);
    return b64u(bytes);
  }

  /** The public key as Sesam wants it: exactly {kty, crv, x, y}. */
  async function publicJwk(publicKey) {
    const full = await crypto.subtle.exportKey("jwk", publicKey);
    return { kty: full.kty, crv: full.crv, x: full.x, y: full.y };
  }

  /**
   * A compact ES256 JWS over method, path, body hash, time and a unique id.
   * WebCrypto's ECDSA signature is already the raw 64-byte r || s that ES256 wants.
   */
  async function makeProof(privateKey, header, method, path, body, iat) {
    const claims = { htm: method, htu: path, bh: await bodyHash(body), iat, jti: newJti() };
    const signingInput = b64uJson(header) + "." + b64uJson(claims);
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      privateKey,
      utf8(signingInput),
    );
    return signingInput + "." + b64u(signature);
  }

  globalThis.SesamPhone = Object.freeze({ b64u, bodyHash, newJti, publicJwk, makeProof });
  if (typeof document === "undefined") return;

  // ---------------------------------------------------------------------------------------
  // Texts: the site's language, which the server writes into <html lang> (its cookie, else
  // the browser's Accept-Language); ?lang=da|en overrides.

  const TEXTS = {
    en: {
      title: "Sesam demo phone",
      badge: "Demo phone",
      setupTitle: "Add your account",
      setupIntro:
        "This page acts as the Sesam app on a phone. It makes its own key in this browser and speaks the real app API.",
      setupGetCode:
        'Get an activation code: log in in another tab and choose "Add a device" on your devices page.',
      setupCodeLink: "Open your devices page",
      activationCode: "Activation code",
      displayName: "Name of this phone",
      advanced: "Advanced",
      advancedHint:
        "Passwordless login needs the app on iOS or Android, version 3.0.0 or newer, with a 6-digit PIN. Change these to see the other answer.",
      pinLength: "PIN length",
      appVersion: "App version",
      platform: "Platform",
      enrolButton: "Add account",
      enrolledAs: "Enrolled as",
      passwordlessYes: "Passwordless login: yes.",
      passwordlessNo: "Passwordless login: no, because {reasons}.",
      deviceGone:
        "This phone is no longer enrolled (it was removed from the account). Enrol it again with a new activation code.",
      enrolAgain: "Enrol again",
      requestsTitle: "Requests",
      noRequests:
        "No requests right now. To try it, open the login page in another tab and type your username.",
      openLogin: "Open the login page",
      forget: "Forget this phone",
      // status and errors
      loading: "Starting…",
      ready: "Type the activation code to add your account.",
      noCrypto:
        "This browser does not offer WebCrypto here. Open the page over https or at http://localhost.",
      noStorage:
        "This browser cannot keep the key, so the phone forgets itself when the page is reloaded.",
      needCode: "Type the activation code from your devices page.",
      needName: "Give this phone a name of 1 to 100 characters.",
      needPin: "The PIN length must be a whole number from 0 to 64.",
      needVersion: "Type an app version, like 3.0.0.",
      makingKey: "Making a key and enrolling…",
      enrolled: "Enrolled as {username}. Waiting for requests.",
      waiting: "Enrolled as {username}. Waiting for requests.",
      offline: "Cannot reach Sesam right now. Still trying…",
      httpError: "Sesam answered with HTTP {status}.",
      clockOff:
        "Your clock is off by about {seconds} seconds compared with Sesam's. The demo phone now corrects for it; set the clock right on a real phone.",
      clockOffPlain: "Your clock is off: Sesam refused the request as too old or too new. Set the clock right and try again.",
      gone: "This phone was removed from the account. Enrol it again.",
      forgetting: "Removing this phone from your account…",
      forgotten: "This phone is forgotten and its key deleted.",
      newRequest: "New request from {service}. Check that you started it.",
      // request cards
      requestCode: "Log in with your app?",
      requestStepUp: "Confirm the login you started with your password?",
      service: "Service",
      time: "Time",
      browser: "Browser",
      os: "System",
      clientIp: "IP address",
      location: "Place",
      unknown: "unknown",
      expiresIn: "Time left: {time}",
      typeNumber: "Type the number shown in your browser",
      sendCode: "Send",
      deny: "Deny",
      fraud: "This was not me",
      badCode: "Type the two digits (10 to 99) shown in your browser.",
      sending: "Sending…",
      approved: "the browser now logs you in.",
      wrongCode: "this login was stopped. Start the login again in the browser to get a new number.",
      denied: "you denied it, and the login was stopped.",
      fraudReported:
        "reported as not you. The login was stopped, and passwordless login is paused for your account until an admin or a password login clears it.",
      rejected: "the login was stopped.",
      expired: "The request expired.",
      ended: "The request ended (answered elsewhere, cancelled or expired).",
      status_approved: "Approved",
      status_wrong_code: "Wrong number",
      status_rejected: "Rejected",
      apiStatus: "API status",
      fromLink: "Opened from a link. Check that you started this login yourself.",
      backToBrowser: "Back to the browser",
      linkMissing: "The request from the link is no longer waiting.",
    },
    da: {
      title: "Sesam demo-telefon",
      badge: "Demo-telefon",
      setupTitle: "Tilføj din konto",
      setupIntro:
        "Denne side opfører sig som Sesam-appen på en telefon. Den laver sin egen nøgle i denne browser og taler det rigtige app-API.",
      setupGetCode:
        'Hent en aktiveringskode: log ind i en anden fane og vælg "Tilføj en enhed" på siden med dine enheder.',
      setupCodeLink: "Åbn dine enheder",
      activationCode: "Aktiveringskode",
      displayName: "Navn på denne telefon",
      advanced: "Avanceret",
      advancedHint:
        "Login uden adgangskode kræver appen på iOS eller Android, version 3.0.0 eller nyere, med en 6-cifret PIN-kode. Ændr dem for at se det andet svar.",
      pinLength: "PIN-kodens længde",
      appVersion: "App-version",
      platform: "Platform",
      enrolButton: "Tilføj konto",
      enrolledAs: "Tilknyttet som",
      passwordlessYes: "Login uden adgangskode: ja.",
      passwordlessNo: "Login uden adgangskode: nej, fordi {reasons}.",
      deviceGone:
        "Denne telefon er ikke længere tilknyttet (den er fjernet fra kontoen). Tilknyt den igen med en ny aktiveringskode.",
      enrolAgain: "Tilknyt igen",
      requestsTitle: "Anmodninger",
      noRequests:
        "Ingen anmodninger lige nu. Prøv det: åbn login-siden i en anden fane og indtast dit brugernavn.",
      openLogin: "Åbn login-siden",
      forget: "Glem denne telefon",
      loading: "Starter…",
      ready: "Indtast aktiveringskoden for at tilføje din konto.",
      noCrypto:
        "Browseren tilbyder ikke WebCrypto her. Åbn siden over https eller på http://localhost.",
      noStorage:
        "Browseren kan ikke gemme nøglen, så telefonen glemmer sig selv, når siden genindlæses.",
      needCode: "Indtast aktiveringskoden fra siden med dine enheder.",
      needName: "Giv telefonen et navn på 1 til 100 tegn.",
      needPin: "PIN-kodens længde skal være et helt tal fra 0 til 64.",
      needVersion: "Indtast en app-version, for eksempel 3.0.0.",
      makingKey: "Laver en nøgle og tilknytter…",
      enrolled: "Tilknyttet som {username}. Venter på anmodninger.",
      waiting: "Tilknyttet som {username}. Venter på anmodninger.",
      offline: "Kan ikke få forbindelse til Sesam lige nu. Prøver stadig…",
      httpError: "Sesam svarede med HTTP {status}.",
      clockOff:
        "Dit ur går omkring {seconds} sekunder forkert i forhold til Sesams. Demo-telefonen retter nu for det; stil uret rigtigt på en rigtig telefon.",
      clockOffPlain: "Dit ur går forkert: Sesam afviste anmodningen som for gammel eller for ny. Stil uret og prøv igen.",
      gone: "Denne telefon er fjernet fra kontoen. Tilknyt den igen.",
      forgetting: "Fjerner denne telefon fra din konto…",
      forgotten: "Telefonen er glemt, og dens nøgle er slettet.",
      newRequest: "Ny anmodning fra {service}. Tjek, at det er dig, der har startet den.",
      requestCode: "Log ind med din app?",
      requestStepUp: "Bekræft det login, du startede med din adgangskode?",
      service: "Tjeneste",
      time: "Tidspunkt",
      browser: "Browser",
      os: "System",
      clientIp: "IP-adresse",
      location: "Sted",
      unknown: "ukendt",
      expiresIn: "Tid tilbage: {time}",
      typeNumber: "Indtast tallet, der vises i din browser",
      sendCode: "Send",
      deny: "Afvis",
      fraud: "Det var ikke mig",
      badCode: "Indtast de to cifre (10 til 99), der vises i din browser.",
      sending: "Sender…",
      approved: "browseren logger dig ind nu.",
      wrongCode: "dette login blev stoppet. Start login forfra i browseren for at få et nyt tal.",
      denied: "du afviste det, og login blev stoppet.",
      fraudReported:
        "meldt som ikke dig. Login blev stoppet, og login uden adgangskode er sat på pause for din konto, indtil en administrator eller et login med adgangskode åbner det igen.",
      rejected: "login blev stoppet.",
      expired: "Anmodningen er udløbet.",
      ended: "Anmodningen er afsluttet (besvaret et andet sted, annulleret eller udløbet).",
      status_approved: "Godkendt",
      status_wrong_code: "Forkert tal",
      status_rejected: "Afvist",
      apiStatus: "API-status",
      fromLink: "Åbnet fra et link. Tjek at det er dig, der er ved at logge ind.",
      backToBrowser: "Tilbage til browseren",
      linkMissing: "Anmodningen fra linket venter ikke længere.",
    },
  };

  function chooseLanguage() {
    const asked = new URLSearchParams(window.location.search).get("lang");
    if (asked === "da" || asked === "en") return asked;
    return document.documentElement.lang === "da" ? "da" : "en";
  }
  const lang = chooseLanguage();

  // The app link from the wait page on the same phone (/app/open, which the demo sends
  // here): the challenge to show, and the browser tab to go back to (the wait page only).
  const LINK = (() => {
    const query = new URLSearchParams(window.location.search);
    const id = query.get("challenge") || "";
    const back = query.get("return") || "";
    return {
      id: /^[A-Za-z0-9-]{1,64}$/.test(id) ? id : null,
      // Only Sesam's own wait page, as docs/app-api.md tells a real app.
      back: back === "/login/wait" ? back : null,
      reported: false,
    };
  })();

  function t(key, vars) {
    const text = TEXTS[lang][key] ?? TEXTS.en[key] ?? key;
    if (!vars) return text;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  }

  function translatePage() {
    document.documentElement.lang = lang;
    document.title = t("title");
    for (const element of document.querySelectorAll("[data-t]")) {
      element.textContent = t(element.dataset.t);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Elements.

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("phone-status"),
    setup: $("setup"),
    form: $("enrol-form"),
    code: $("activation-code"),
    name: $("display-name"),
    pin: $("pin-length"),
    version: $("app-version"),
    platform: $("platform"),
    enrolError: $("enrol-error"),
    enrolButton: $("enrol-button"),
    enrolled: $("enrolled"),
    username: $("username"),
    passwordless: $("passwordless"),
    factName: $("fact-name"),
    factPlatform: $("fact-platform"),
    factVersion: $("fact-version"),
    factPin: $("fact-pin"),
    deviceGone: $("device-gone"),
    enrolAgain: $("enrol-again"),
    requestsSection: $("requests-section"),
    noRequests: $("no-requests"),
    requests: $("requests"),
    forget: $("forget-button"),
  };

  function say(text, kind) {
    ui.status.classList.toggle("is-error", kind === "error");
    ui.status.classList.toggle("is-ok", kind === "ok");
    if (ui.status.textContent !== text) ui.status.textContent = text;
  }

  // ---------------------------------------------------------------------------------------
  // Keeping the phone: one IndexedDB record with the key pair (private key not extractable).

  const DB_NAME = "sesam-demo-phone";
  const DB_STORE = "phone";
  const DB_KEY = "self";
  let storageWorks = typeof indexedDB !== "undefined";
  let memoryRecord = null;

  function openDb() {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(DB_STORE);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  async function dbRun(mode, operation) {
    const db = await openDb();
    try {
      return await new Promise((resolve, reject) => {
        const transaction = db.transaction(DB_STORE, mode);
        const request = operation(transaction.objectStore(DB_STORE));
        let result;
        request.onsuccess = () => {
          result = request.result;
        };
        transaction.oncomplete = () => resolve(result);
        transaction.onerror = () => reject(transaction.error);
        transaction.onabort = () => reject(transaction.error || new Error("aborted"));
      });
    } finally {
      db.close();
    }
  }

  async function loadRecord() {
    if (storageWorks) {
      try {
        return (await dbRun("readonly", (s) => s.get(DB_KEY))) || null;
      } catch (_) {
        storageWorks = false;
      }
    }
    return memoryRecord;
  }

  async function saveRecord(record) {
    memoryRecord = record;
    if (!storageWorks) return false;
    try {
      await dbRun("readwrite", (s) => s.put(record, DB_KEY));
      return true;
    } catch (_) {
      storageWorks = false;
      return false;
    }
  }

  async function clearRecord() {
    memoryRecord = null;
    if (!storageWorks) return;
    try {
      await dbRun("readwrite", (s) => s.delete(DB_KEY));
    } catch (_) {
      /* nothing more we can do; the record is gone from memory */
    }
  }

  // ---------------------------------------------------------------------------------------
  // Talking to Sesam.

  class ApiError extends Error {
    constructor(error, message, status) {
      super(message);
      this.error = error;
      this.status = status;
    }
  }

  let clockOffset = 0; // seconds to add to this browser's clock to get Sesam's
  let clockChanged = false; // learned a new offset that the user has not been told about
  const nowSeconds = () => Math.floor(Date.now() / 1000 + clockOffset);

  /** After a stale_proof, learn Sesam's time from the Date header; true when it helps. */
  function learnClock(response) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (Number.isNaN(date)) return false;
    // The header has whole seconds: a few seconds' difference is noise, well inside Sesam's ±60 s.
    let offset = Math.round(date / 1000 - Date.now() / 1000);
    if (Math.abs(offset) < 30) offset = 0;
    if (offset === clockOffset) return false;
    clockOffset = offset;
    return true;
  }

  /**
   * One signed request. `payload` is an object (sent as JSON) or undefined (empty body).
   * The body string is made once and the same bytes are hashed and sent.
   */
  async function call(method, path, payload, signer, retried) {
    const body = payload === undefined ? "" : JSON.stringify(payload);
    const url = API + path;
    const proof = await makeProof(signer.privateKey, signer.header, method, url, body, nowSeconds());
    const headers = { Authorization: "DeviceProof " + proof, Accept: "application/json" };
    if (body !== "") headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === "" ? undefined : body,
        credentials: "omit",
        cache: "no-store",
      });
    } catch (_) {
      throw new ApiError("offline", t("offline"), 0);
    }
    const text = await response.text().catch(() => "");
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (response.ok) return { status: response.status, data };
    const error = data && typeof data.error === "string" ? data.error : "http_" + response.status;
    const message =
      data && typeof data.message === "string" ? data.message : t("httpError", { status: response.status });
    if (error === "stale_proof") {
      if (!retried && learnClock(response)) {
        clockChanged = true;
        return call(method, path, payload, signer, true);
      }
      throw new ApiError(error, t("clockOffPlain") + " (" + message + ")", response.status);
    }
    throw new ApiError(error, message, response.status);
  }

  /** Tells the user once about a newly learned clock offset; true when it said something. */
  function showClockNotice() {
    if (!clockChanged) return false;
    clockChanged = false;
    if (clockOffset !== 0) say(t("clockOff", { seconds: Math.abs(clockOffset) }), "error");
    else if (phone) say(t("waiting", { username: phone.username }));
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // The phone's state.

  let phone = null; // { privateKey, publicKey, publicJwk, deviceId, username, device }

  const deviceSigner = () => ({
    privateKey: phone.privateKey,
    header: { alg: "ES256", typ: PROOF_TYP, kid: phone.deviceId },
  });

  function showSetup(message, kind) {
    stopPolling();
    clearCards();
    ui.enrolled.hidden = true;
    ui.setup.hidden = false;
    ui.enrolButton.disabled = !cryptoWorks();
    ui.enrolError.hidden = true;
    say(message || (cryptoWorks() ? t("ready") : t("noCrypto")), kind || (cryptoWorks() ? undefined : "error"));
  }

  function showDevice(device) {
    if (!device || typeof device !== "object") return;
    ui.username.textContent = String(device.username ?? phone.username ?? "");
    const p = device.passwordless;
    if (p && typeof p.eligible === "boolean") {
      const reasons = Array.isArray(p.reasons) ? p.reasons.map(String).join("; ") : "";
      ui.passwordless.textContent = p.eligible ? t("passwordlessYes") : t("passwordlessNo", { reasons });
      ui.passwordless.classList.toggle("yes", p.eligible);
      ui.passwordless.classList.toggle("no", !p.eligible);
    }
    ui.factName.textContent = String(device.display_name ?? "");
    ui.factPlatform.textContent = String(device.platform ?? "");
    ui.factVersion.textContent = String(device.app_version ?? "");
    ui.factPin.textContent = String(device.pin_length ?? "");
  }

  function showEnrolled() {
    ui.setup.hidden = true;
    ui.enrolled.hidden = false;
    ui.deviceGone.hidden = true;
    ui.requestsSection.hidden = false;
    ui.forget.hidden = false;
    ui.forget.disabled = false;
    showDevice(phone.device || { username: phone.username });
    updateEmpty();
  }

  function deviceGone() {
    stopPolling();
    clearCards();
    ui.requestsSection.hidden = true;
    ui.forget.hidden = true;
    ui.deviceGone.hidden = false;
    say(t("gone"), "error");
    ui.enrolAgain.focus();
  }

  function cryptoWorks() {
    return Boolean(window.isSecureContext && globalThis.crypto && crypto.subtle);
  }

  // ---------------------------------------------------------------------------------------
  // Enrolment.

  function enrolFailed(message) {
    ui.enrolError.textContent = message;
    ui.enrolError.hidden = false;
    say(message, "error");
  }

  async function enrol(event) {
    event.preventDefault();
    if (!cryptoWorks()) return enrolFailed(t("noCrypto"));
    ui.enrolError.hidden = true;
    const activationCode = ui.code.value.replace(/[\s-]+/g, "").toUpperCase();
    const displayName = ui.name.value.trim();
    const pinText = ui.pin.value.trim();
    const pinLength = Number(pinText);
    const appVersion = ui.version.value.trim();
    if (!activationCode) {
      ui.code.focus();
      return enrolFailed(t("needCode"));
    }
    if (!displayName || displayName.length > 100) {
      ui.name.focus();
      return enrolFailed(t("needName"));
    }
    if (!/^\d{1,2}$/.test(pinText) || pinLength > 64) {
      ui.pin.closest("details").open = true;
      ui.pin.focus();
      return enrolFailed(t("needPin"));
    }
    if (!appVersion) {
      ui.version.closest("details").open = true;
      ui.version.focus();
      return enrolFailed(t("needVersion"));
    }
    ui.enrolButton.disabled = true;
    say(t("makingKey"));
    try {
      // The private key is not extractable: it can sign, and never leave this browser.
      const keyPair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
        "sign",
        "verify",
      ]);
      const jwk = await publicJwk(keyPair.publicKey);
      const payload = {
        activation_code: activationCode,
        public_key: jwk,
        platform: ui.platform.value,
        app_version: appVersion,
        pin_length: pinLength,
        display_name: displayName,
      };
      const signer = {
        privateKey: keyPair.privateKey,
        header: { alg: "ES256", typ: PROOF_TYP, jwk },
      };
      const { data } = await call("POST", "/enrolments", payload, signer, false);
      if (!data || typeof data.device_id !== "string") throw new ApiError("bad_answer", t("httpError", { status: 201 }), 201);
      phone = {
        privateKey: keyPair.privateKey,
        publicKey: keyPair.publicKey,
        publicJwk: jwk,
        deviceId: data.device_id,
        username: String(data.username ?? ""),
        device: data,
      };
      const kept = await saveRecord(phone);
      ui.code.value = "";
      showEnrolled();
      say(t("enrolled", { username: phone.username }) + (kept ? "" : " " + t("noStorage")), kept ? "ok" : "error");
      showClockNotice();
      ui.username.closest("h2").tabIndex = -1;
      ui.username.closest("h2").focus();
      startPolling();
    } catch (e) {
      enrolFailed(e instanceof ApiError ? e.message : String(e && e.message ? e.message : e));
    } finally {
      ui.enrolButton.disabled = !cryptoWorks();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Forgetting.

  async function forget() {
    if (!phone) return showSetup();
    ui.forget.disabled = true;
    say(t("forgetting"));
    try {
      await call("DELETE", "/devices/self", undefined, deviceSigner(), false);
    } catch (e) {
      if (!(e instanceof ApiError && e.error === "unknown_device")) {
        ui.forget.disabled = false;
        say(e instanceof ApiError ? e.message : String(e), "error");
        return;
      }
    }
    phone = null;
    await clearRecord();
    showSetup(t("forgotten"), "ok");
    ui.code.focus();
  }

  async function enrolAgain() {
    phone = null;
    await clearRecord();
    showSetup();
    ui.code.focus();
  }

  // ---------------------------------------------------------------------------------------
  // Requests.

  const cards = new Map(); // challenge id -> { challenge, el, done, busy, ... }
  let cardCounter = 0;
  let pollTimer = null;
  let pollGeneration = 0;
  let countdownTimer = null;
  let pollTrouble = false;

  function startPolling() {
    stopPolling();
    const generation = pollGeneration;
    const tick = async () => {
      if (generation !== pollGeneration || !phone) return;
      await pollOnce();
      if (generation === pollGeneration) pollTimer = window.setTimeout(tick, POLL_MS);
    };
    tick();
    if (!countdownTimer) countdownTimer = window.setInterval(updateCountdowns, 1000);
  }

  function stopPolling() {
    pollGeneration += 1;
    if (pollTimer) window.clearTimeout(pollTimer);
    pollTimer = null;
  }

  async function pollOnce() {
    try {
      const { data } = await call("GET", "/challenges", undefined, deviceSigner(), false);
      const list = data && Array.isArray(data.challenges) ? data.challenges : [];
      renderChallenges(list);
      if (!showClockNotice() && pollTrouble) {
        // An earlier trouble (offline, refused) has passed.
        say(t("waiting", { username: phone.username }));
      }
      pollTrouble = false;
    } catch (e) {
      pollTrouble = true;
      if (!(e instanceof ApiError)) return say(String(e), "error");
      if (e.error === "unknown_device") return deviceGone();
      say(e.message, "error");
    }
  }

  function renderChallenges(list) {
    const seen = new Set();
    for (const challenge of list) {
      if (!challenge || typeof challenge.id !== "string") continue;
      seen.add(challenge.id);
      if (!cards.has(challenge.id)) {
        addCard(challenge);
        say(t("newRequest", { service: challenge.service || t("unknown") }));
      }
    }
    if (LINK.id && !LINK.reported) {
      LINK.reported = true;
      if (!seen.has(LINK.id)) say(t("linkMissing"), "error");
    }
    for (const entry of cards.values()) {
      if (!seen.has(entry.challenge.id) && !entry.done && !entry.busy) {
        const expired = Number(entry.challenge.expires_at) <= nowSeconds();
        finish(entry, expired ? t("expired") : t("ended"), "ended");
      }
    }
    updateEmpty();
  }

  function updateEmpty() {
    ui.noRequests.hidden = cards.size > 0;
  }

  function clearCards() {
    for (const entry of cards.values()) window.clearTimeout(entry.removeTimer);
    cards.clear();
    ui.requests.replaceChildren();
    updateEmpty();
  }

  function make(tag, className, text) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function formatTime(unix) {
    const n = Number(unix);
    if (!Number.isFinite(n)) return t("unknown");
    return new Date(n * 1000).toLocaleTimeString(lang === "da" ? "da-DK" : "en-GB");
  }

  function formatLeft(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function addCard(challenge) {
    cardCounter += 1;
    const n = cardCounter;
    // "approve" is the step-up after a password; it is answered like a passwordless login.
    const isStepUp = challenge.kind === "approve";
    const card = make("article", "request");
    card.dataset.id = challenge.id;
    card.dataset.kind = isStepUp ? "approve" : "code";
    card.setAttribute("aria-labelledby", "request-" + n + "-title");

    const title = make("h3", "request-title", isStepUp ? t("requestStepUp") : t("requestCode"));
    title.id = "request-" + n + "-title";
    card.append(title);
    const linked = challenge.id === LINK.id;
    if (linked) {
      card.classList.add("linked");
      card.append(make("p", "linked-note small", t("fromLink")));
    }

    const facts = make("dl", "request-context");
    const fact = (label, value, className) => {
      const dd = make("dd", className, value === null || value === undefined || value === "" ? t("unknown") : String(value));
      facts.append(make("dt", null, label), dd);
    };
    fact(t("service"), challenge.service, "service");
    fact(t("time"), formatTime(challenge.created_at), "time");
    fact(t("browser"), challenge.browser, "browser");
    fact(t("os"), challenge.os, "os");
    fact(t("clientIp"), challenge.client_ip, "client-ip");
    fact(t("location"), challenge.location, "location");
    card.append(facts);

    const countdown = make("p", "countdown");
    card.append(countdown);

    const entry = { challenge, el: card, countdown, done: false, busy: false, buttons: [], removeTimer: null, linked };

    // Number matching for both kinds, and no Approve button: only the person at the browser
    // knows the number, so a push someone else started cannot be approved by a tired thumb.
    {
      const form = make("form", "code-form");
      form.noValidate = true;
      const inputId = "request-" + n + "-code";
      const hintId = "request-" + n + "-hint";
      const label = make("label", null, t("typeNumber"));
      label.htmlFor = inputId;
      const row = make("div", "code-row");
      const input = make("input", "code-input");
      input.id = inputId;
      input.type = "text";
      input.inputMode = "numeric";
      input.autocomplete = "off";
      input.maxLength = 2;
      input.pattern = "[1-9][0-9]";
      input.required = true;
      input.setAttribute("aria-describedby", hintId);
      const send = make("button", "send-code", t("sendCode"));
      send.type = "submit";
      row.append(input, send);
      const hint = make("p", "code-hint error");
      hint.id = hintId;
      hint.hidden = true;
      form.append(label, row, hint);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const code = input.value.trim();
        if (!/^[1-9][0-9]$/.test(code)) {
          hint.textContent = t("badCode");
          hint.hidden = false;
          input.setAttribute("aria-invalid", "true");
          input.focus();
          return;
        }
        hint.hidden = true;
        input.removeAttribute("aria-invalid");
        answer(entry, { code }, "code");
      });
      card.append(form);
      entry.input = input;
      entry.buttons.push(send);
    }

    const actions = make("div", "request-actions");
    const deny = make("button", "deny", t("deny"));
    deny.type = "button";
    deny.addEventListener("click", () => answer(entry, { decision: "deny" }, "deny"));
    const fraud = make("button", "fraud", t("fraud"));
    fraud.type = "button";
    fraud.addEventListener("click", () => answer(entry, { decision: "report_fraud" }, "report_fraud"));
    actions.append(deny, fraud);
    card.append(actions);
    entry.buttons.push(deny, fraud);

    const result = make("p", "result");
    result.hidden = true;
    card.append(result);
    entry.result = result;

    cards.set(challenge.id, entry);
    ui.requests.append(card);
    updateCountdown(entry);
    // Bring the first request's code field into focus, unless the user is busy elsewhere.
    const active = document.activeElement;
    if (entry.input && (linked || cards.size === 1) && (!active || active === document.body || active.tagName === "H2")) {
      entry.input.focus();
    }
  }

  function setBusy(entry, busy) {
    for (const button of entry.buttons) button.disabled = busy || entry.done;
    if (entry.input) entry.input.disabled = busy || entry.done;
    entry.el.setAttribute("aria-busy", busy ? "true" : "false");
  }

  /** Ends a card: shows `text`, disables its controls, and removes it after a while. */
  function finish(entry, text, status) {
    // Controls lose focus while disabled; answer() remembers whether the user was on this card.
    const hadFocus = entry.el.contains(document.activeElement) || Boolean(entry.focusBefore);
    entry.focusBefore = null;
    entry.done = true;
    setBusy(entry, false);
    entry.el.classList.add("done", "status-" + status);
    entry.el.dataset.status = status;
    entry.result.dataset.status = status;
    entry.result.replaceChildren();
    const label = t("status_" + status);
    if (label !== "status_" + status) {
      // "Approved — the browser now logs you in. (API status: approved)"
      entry.result.append(make("strong", "status-word", label), " — ", text, " ");
      const raw = make("span", "status-raw small", "(" + t("apiStatus") + ": ");
      raw.append(make("code", null, status), ")");
      entry.result.append(raw);
    } else {
      entry.result.append(text);
    }
    if (entry.linked && LINK.back) {
      // As the real app does after an app link: back to the browser tab that waits.
      const back = make("a", "button back-to-browser", t("backToBrowser"));
      back.id = "back-to-browser";
      back.href = LINK.back;
      entry.result.append(" ", back);
    }
    entry.result.hidden = false;
    entry.countdown.hidden = true;
    if (hadFocus) {
      // The card's controls are hidden now; keep keyboard users on the card.
      entry.result.tabIndex = -1;
      entry.result.focus();
    }
    const kind = status === "approved" ? "ok" : status === "ended" ? undefined : "error";
    say(entry.result.textContent, kind);
    entry.removeTimer = window.setTimeout(() => {
      if (cards.get(entry.challenge.id) === entry) {
        cards.delete(entry.challenge.id);
        entry.el.remove();
        updateEmpty();
      }
    }, status === "ended" ? 8000 : 20000);
  }

  function restoreFocus(entry) {
    const element = entry.focusBefore;
    entry.focusBefore = null;
    if (element && entry.el.contains(element)) element.focus();
  }

  function resultText(status, how) {
    if (status === "approved") return t("approved");
    if (status === "wrong_code") return t("wrongCode");
    if (how === "report_fraud") return t("fraudReported");
    if (how === "deny") return t("denied");
    return t("rejected");
  }

  async function answer(entry, payload, how) {
    if (entry.done || entry.busy || !phone) return;
    entry.busy = true;
    entry.focusBefore = entry.el.contains(document.activeElement) ? document.activeElement : null;
    setBusy(entry, true);
    say(t("sending"));
    try {
      const path = "/challenges/" + encodeURIComponent(entry.challenge.id) + "/answer";
      const { data } = await call("POST", path, payload, deviceSigner(), false);
      const status = data && typeof data.status === "string" ? data.status : "rejected";
      entry.busy = false;
      finish(entry, resultText(status, how), status);
    } catch (e) {
      entry.busy = false;
      if (!(e instanceof ApiError)) {
        setBusy(entry, false);
        restoreFocus(entry);
        return say(String(e), "error");
      }
      if (e.error === "unknown_device") return deviceGone();
      if (e.status === 409 || e.error === "challenge_not_for_device") {
        return finish(entry, e.message, "ended");
      }
      // Nothing changed on the server (refused proof, bad answer, offline): let the user retry.
      setBusy(entry, false);
      restoreFocus(entry);
      say(e.message, "error");
    }
  }

  function updateCountdown(entry) {
    if (entry.done) return;
    const left = Number(entry.challenge.expires_at) - nowSeconds();
    if (Number.isFinite(left) && left <= 0 && !entry.busy) {
      finish(entry, t("expired"), "ended");
      return;
    }
    entry.countdown.textContent = t("expiresIn", {
      time: Number.isFinite(left) ? formatLeft(left) : t("unknown"),
    });
    entry.el.classList.toggle("urgent", Number.isFinite(left) && left <= 20);
  }

  function updateCountdowns() {
    for (const entry of cards.values()) updateCountdown(entry);
  }

  // ---------------------------------------------------------------------------------------
  // Start.

  async function start() {
    translatePage();
    say(t("loading"));
    ui.form.addEventListener("submit", enrol);
    ui.forget.addEventListener("click", forget);
    ui.enrolAgain.addEventListener("click", enrolAgain);

    const record = await loadRecord();
    if (!storageWorks) say(t("noStorage"), "error");
    if (!record || !record.privateKey || !record.deviceId) {
      showSetup(storageWorks ? undefined : t("noStorage"), storageWorks ? undefined : "error");
      return;
    }
    phone = record;
    showEnrolled();
    say(t("waiting", { username: phone.username }));
    if (!cryptoWorks()) return say(t("noCrypto"), "error");
    // Refresh what Sesam says about this device (it may have been removed meanwhile).
    try {
      const { data } = await call("GET", "/devices/self", undefined, deviceSigner(), false);
      if (data && typeof data === "object") {
        phone.device = data;
        phone.username = String(data.username ?? phone.username);
        showDevice(data);
        await saveRecord(phone);
      }
    } catch (e) {
      if (e instanceof ApiError && e.error === "unknown_device") return deviceGone();
      say(e instanceof ApiError ? e.message : String(e), "error");
    }
    startPolling();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
