// Sluice console: the only script. Pages work without it; it adds two things.
// 1. The deployment page follows the deployment live: each event of the API's SSE stream
//    (served under /ui) fetches the server-rendered fragment and swaps it in, no reload.
// 2. A button asks for a confirmation before it posts.
"use strict";

function confirmForms(root) {
  root.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
}

function followDeployment(live) {
  var events = live.getAttribute("data-events");
  var url = live.getAttribute("data-live");
  var settled = function () {
    var s = live.querySelector("[data-settled]");
    return s && s.getAttribute("data-settled") === "true";
  };
  if (settled()) { return; }
  var source = new EventSource(events);
  var busy = false, again = false;
  var refresh = function () {
    if (busy) { again = true; return; }
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) { live.innerHTML = html; confirmForms(live); }
        if (settled()) { source.close(); }
      })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  };
  source.addEventListener("deployment", refresh);
  source.addEventListener("error", function () {
    // The stream ends once the deployment settles; the browser would reconnect forever.
    if (settled()) { source.close(); }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  confirmForms(document);
  var live = document.getElementById("live");
  if (live && window.EventSource) { followDeployment(live); }
});
