// Leads list: select all rows on the page, count the selection, confirm bulk actions on
// everything matching the filter. Delegated from the document, so it keeps working
// after htmx swaps the table in.
(function () {
  "use strict";

  function formOf(element) { return element.closest("[data-bulk-form]"); }

  function refresh(form) {
    var boxes = form.querySelectorAll("input[name=ids]");
    var checked = form.querySelectorAll("input[name=ids]:checked").length;
    var counter = form.querySelector("[data-selected-count]");
    if (counter) counter.textContent = checked;
    var all = form.querySelector("[data-select-all]");
    if (all) {
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    var form = formOf(target);
    if (!form) return;
    if (target.matches("[data-select-all]")) {
      form.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = target.checked; });
      var selected = form.querySelector("input[name=scope][value=selected]");
      if (selected) selected.checked = true;
    }
    refresh(form);
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("[data-bulk-form]")) return;
    var all = form.querySelector("[data-scope-all]");
    if (all && all.checked && !window.confirm(form.getAttribute("data-confirm-all"))) {
      event.preventDefault();
    }
  });
})();
