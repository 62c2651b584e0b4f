// wiremesh dashboard: the few things pages do with a script. No inline script anywhere
// (the Content-Security-Policy forbids it); every page works without this file, except
// that the device list then shows live changes only on reload.
"use strict";

function confirmForms(root) {
  root.querySelectorAll("form[data-confirm]").forEach(function (form) {
    if (form.dataset.confirmBound) return;
    form.dataset.confirmBound = "1";
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

function autosubmit(root) {
  root.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
}

// The device list: the server pushes the table's new rows (Server-Sent Events) whenever a
// device goes online or offline, is enrolled, renamed, revoked or deleted.
function liveRows() {
  var body = document.getElementById("device-rows");
  if (!body || !window.EventSource) return;
  var status = document.getElementById("live-status");
  var say = function (text) { if (status) status.textContent = text; };
  var source = new EventSource(body.dataset.stream);
  source.addEventListener("open", function () { say("Live updates: on"); });
  source.addEventListener("error", function () { say("Live updates: reconnecting…"); });
  source.addEventListener("devices", function (event) {
    var open = [];
    body.querySelectorAll("tr").forEach(function (row) {
      var details = row.querySelector("details");
      if (details && details.open) open.push(row.id);
    });
    var focused = document.activeElement;
    var focusedName = focused && body.contains(focused) ? focused.closest("form") : null;
    var focusedAction = focusedName ? focusedName.getAttribute("action") : null;
    body.innerHTML = JSON.parse(event.data).html;
    open.forEach(function (id) {
      var row = document.getElementById(id);
      var details = row && row.querySelector("details");
      if (details) details.open = true;
    });
    if (focusedAction) {
      var again = body.querySelector('form[action="' + focusedAction + '"] button, form[action="' + focusedAction + '"] input:not([type=hidden])');
      if (again) again.focus();
    }
    confirmForms(body);
    body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
    say("Live updates: on (updated " + new Date().toLocaleTimeString() + ")");
  });
}

document.addEventListener("DOMContentLoaded", function () {
  confirmForms(document);
  autosubmit(document);
  liveRows();
});
