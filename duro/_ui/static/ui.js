// duro ui: live refresh of the part of the page that changes, action dialogs, and the theme.
// Pages work without it (filters, links and paging are plain HTML); this only adds comfort.
"use strict";
(function () {
  const root = document.documentElement;
  const THEMES = ["auto", "light", "dark"];

  function applyTheme(theme) {
    if (theme === "auto") root.removeAttribute("data-theme");
    else root.setAttribute("data-theme", theme);
    const button = document.getElementById("theme");
    if (button) button.textContent = "theme: " + theme;
  }
  applyTheme(localStorage.getItem("duro-theme") || "auto");

  document.addEventListener("DOMContentLoaded", function () {
    applyTheme(localStorage.getItem("duro-theme") || "auto");
    const themeButton = document.getElementById("theme");
    if (themeButton) {
      themeButton.addEventListener("click", function () {
        const current = localStorage.getItem("duro-theme") || "auto";
        const next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
        localStorage.setItem("duro-theme", next);
        applyTheme(next);
      });
    }

    document.querySelectorAll("[data-dialog]").forEach(function (button) {
      button.addEventListener("click", function () {
        const dialog = document.getElementById(button.getAttribute("data-dialog"));
        if (dialog) dialog.showModal();
      });
    });

    startLive();
  });

  function startLive() {
    const live = document.getElementById("live");
    const toggle = document.getElementById("live-toggle");
    const status = document.getElementById("live-status");
    if (!live) return;
    const every = parseFloat(live.getAttribute("data-live-every") || "0");
    if (!(every > 0)) {
      if (toggle) toggle.closest("label").hidden = true;
      return;
    }
    if (toggle) {
      toggle.checked = localStorage.getItem("duro-live") !== "off";
      toggle.addEventListener("change", function () {
        localStorage.setItem("duro-live", toggle.checked ? "on" : "off");
      });
    }
    let busy = false;
    const timer = setInterval(async function () {
      if (busy || document.hidden || (toggle && !toggle.checked)) return;
      if (document.querySelector("dialog[open]")) return; // never under an open confirmation
      busy = true;
      try {
        const response = await fetch(live.getAttribute("data-live-url"), {
          headers: { "X-Duro-Partial": "1" },
          credentials: "same-origin",
        });
        const html = await response.text();
        if (response.ok || response.status === 400) {
          replaceKeepingOpenDetails(live, html);
          if (status) status.textContent = "updated " + new Date().toLocaleTimeString();
          if (response.headers.get("X-Duro-Live") === "stop") {
            clearInterval(timer);
            if (status) status.textContent += " · finished";
          }
        } else if (status) {
          status.textContent = "refresh failed (" + response.status + ")";
        }
      } catch (error) {
        if (status) status.textContent = "cannot reach duro ui";
      } finally {
        busy = false;
      }
    }, every * 1000);
  }

  function replaceKeepingOpenDetails(container, html) {
    const open = new Set();
    container.querySelectorAll("details[data-key]").forEach(function (d) {
      if (d.open) open.add(d.getAttribute("data-key"));
    });
    const closed = new Set();
    container.querySelectorAll("details[data-key]").forEach(function (d) {
      if (!d.open) closed.add(d.getAttribute("data-key"));
    });
    container.innerHTML = html;
    container.querySelectorAll("details[data-key]").forEach(function (d) {
      const key = d.getAttribute("data-key");
      if (open.has(key)) d.open = true;
      else if (closed.has(key)) d.open = false;
    });
  }
})();
