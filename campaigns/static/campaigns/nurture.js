// The sequence builder: a step row shows the inputs of its kind. Without JavaScript
// the server renders them for the kind saved, and a changed kind shows its inputs
// after the next add/move/save.
(function () {
  "use strict";
  function show(row) {
    var select = row.querySelector("[data-step-kind]");
    if (!select) return;
    row.setAttribute("data-kind", select.value);
    row.querySelectorAll("[data-for]").forEach(function (block) {
      block.hidden = block.getAttribute("data-for") !== select.value;
    });
  }
  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-step-kind]")) return;
    var row = event.target.closest("[data-kind]");
    if (row) show(row);
  });
})();
