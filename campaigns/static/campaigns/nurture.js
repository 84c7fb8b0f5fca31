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
  // A branch shows the inputs its condition uses (score: a value; stage: a stage; …).
  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-step-condition]")) return;
    var option = event.target.selectedOptions[0];
    var inputs = (option ? option.getAttribute("data-inputs") || "" : "").split(" ");
    var block = event.target.closest("[data-for]");
    block.querySelectorAll("[data-condition-input]").forEach(function (field) {
      field.hidden = inputs.indexOf(field.getAttribute("data-condition-input")) < 0;
    });
  });
  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-step-kind]")) return;
    var row = event.target.closest("[data-kind]");
    if (row) show(row);
  });
})();
