// Sitequest dashboard: small enhancements only. Every form works without this file.
(function () {
  "use strict";

  function sync() {
    var custom = document.getElementById("access-custom");
    var scopes = document.getElementById("custom-scopes");
    if (custom && scopes) {
      scopes.hidden = !custom.checked;
    }
    var onDate = document.getElementById("expiry-date-choice");
    var date = document.getElementById("expiry-date");
    if (onDate && date) {
      date.disabled = !onDate.checked;
    }
  }

  function copyKey(button) {
    var key = document.getElementById(button.getAttribute("data-target"));
    if (!key) {
      return;
    }
    var done = function () { button.textContent = "Copied"; };
    var manual = function () {
      var range = document.createRange();
      range.selectNodeContents(key);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(key.textContent).then(done, manual);
    } else {
      manual();
    }
  }

  // Charts and the window counts are refreshed together, so that they never disagree.
  function refreshCharts() {
    var charts = document.querySelectorAll("img.usage, img.usage-detail");
    for (var i = 0; i < charts.length; i++) {
      charts[i].src = charts[i].getAttribute("data-src") + "?t=" + Date.now();
    }
    if (!window.fetch) {
      return;
    }
    fetch("/dashboard/settings/api/windows", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (windows) {
        if (!windows) {
          return;
        }
        var rows = document.querySelectorAll("[data-key-id]");
        for (var j = 0; j < rows.length; j++) {
          var id = rows[j].getAttribute("data-key-id");
          if (!Object.prototype.hasOwnProperty.call(windows, id)) {
            continue;
          }
          var cell = rows[j].classList.contains("window") ? rows[j] : rows[j].querySelector(".window");
          if (cell) {
            cell.textContent = windows[id].window;
          }
          var usage = rows[j].querySelector(".usage-text");
          if (usage) {
            usage.textContent = windows[id].usage;
          }
          var totals = [["total-granted", "granted"], ["total-forbidden", "forbidden"], ["total-limited", "limited"]];
          for (var t = 0; t < totals.length; t++) {
            var cellT = rows[j].querySelector("#" + totals[t][0]);
            if (cellT) {
              cellT.textContent = String(windows[id][totals[t][1]]);
            }
          }
        }
      })
      .catch(function () {});
  }

  // The key is on the page only while it is shown: cleared when the page is left, so that the
  // copy a browser keeps for Back and Forward holds no key, and such a copy, shown again, goes
  // to the list instead.
  window.addEventListener("pagehide", function () {
    var shown = document.querySelectorAll(".reveal .key, .reveal .curl");
    for (var i = 0; i < shown.length; i++) {
      shown[i].textContent = "";
    }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && document.getElementById("new-key")) {
      window.location.replace("/dashboard/settings/api");
    }
  });

  // The name's length as the server counts it: Unicode characters (code points), not the
  // UTF-16 units a maxlength attribute would count.
  function countName() {
    var name = document.getElementById("name");
    var count = document.getElementById("name-count");
    if (name && count) {
      var n = Array.from(name.value).length;
      count.textContent = String(n);
      var max = Number(name.getAttribute("data-max-chars"));
      count.parentNode.classList.toggle("over", max > 0 && n > max);
    }
  }

  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "name") {
      countName();
    }
  });

  document.addEventListener("change", function (event) {
    var name = event.target && event.target.name;
    if (name === "access" || name === "expiry") {
      sync();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    sync();
    countName();
    var notice = document.getElementById("notice");
    if (notice) {
      notice.focus({ preventScroll: true });
    }
    var buttons = document.querySelectorAll("button.copy-key");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (event) { copyKey(event.currentTarget); });
    }
    if (document.querySelector("img.usage, img.usage-detail")) {
      window.setInterval(refreshCharts, 10000);
    }
  });
})();
