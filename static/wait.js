// The wait page: listen for the challenge's state with Server-Sent Events, fall back to
// polling the JSON status, and go on as soon as the app has answered. Works without it too.
"use strict";
(function () {
  const region = document.getElementById("wait-status");
  if (!region) return;
  const pollUrl = region.dataset.pollUrl;
  const eventsUrl = region.dataset.eventsUrl;
  const continueButton = document.getElementById("continue");
  if (continueButton) continueButton.hidden = true;
  const HOLD_MS = Number(region.dataset.holdMs) || 1200;
  let finished = false;
  let polling = null;

  function show(text) {
    if (text && region.textContent !== text) region.textContent = text;
  }

  function handle(state) {
    if (finished || !state || !state.status) return;
    if (state.status === "pending") {
      show(region.dataset.textPending);
      return;
    }
    finished = true;
    show(state.status === "approved" ? region.dataset.textApproved : region.dataset.textEnded);
    // Hold the news on screen long enough for a screen reader to announce it (the live
    // region speaks after the current utterance), then go on.
    const go = (url) => window.setTimeout(() => window.location.assign(url), HOLD_MS);
    if (state.status === "cancelled") {
      // Another tab of this browser may have started a newer login that replaced this
      // one: ask once more, a moment later, and follow that login if there is one.
      window.setTimeout(() => {
        fetch(pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then((r) => (r.ok ? r.json() : null))
          .then((now) => {
            const live = now && (now.status === "pending" || now.status === "approved");
            window.location.assign(live ? now.redirect || window.location.pathname : state.redirect);
          })
          .catch(() => window.location.assign(state.redirect));
      }, 1000);
      return;
    }
    if (state.redirect) go(state.redirect);
  }

  function poll() {
    if (polling) return;
    const tick = () =>
      fetch(pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : null))
        .then(handle)
        .catch(() => show(region.dataset.textOffline));
    tick();
    polling = window.setInterval(() => (finished ? window.clearInterval(polling) : tick()), 2000);
  }

  if (window.EventSource && eventsUrl) {
    const source = new EventSource(eventsUrl);
    source.addEventListener("status", (e) => {
      try {
        handle(JSON.parse(e.data));
      } catch (_) {
        /* a malformed event is ignored; the next one or the poll corrects it */
      }
      if (finished) source.close();
    });
    source.onerror = () => {
      source.close();
      if (!finished) poll();
    };
  } else {
    poll();
  }
  if (continueButton) {
    // If nothing has moved for a while, offer the manual way too.
    window.setTimeout(() => {
      if (!finished) continueButton.hidden = false;
    }, 15000);
  }
})();
