// Progressive enhancement only: every page works without this file.
// Long <select data-search="Search"> lists get a filter box above them; typing narrows the options.
(function () {
  "use strict";
  var MIN_OPTIONS = 12;
  document.querySelectorAll("select[data-search]").forEach(function (select) {
    if (select.options.length < MIN_OPTIONS) return;
    var all = Array.prototype.slice.call(select.options);
    var box = document.createElement("input");
    box.type = "search";
    box.className = "select-search";
    box.placeholder = select.getAttribute("data-search");
    var label = select.labels && select.labels[0] ? select.labels[0].textContent.trim() : "";
    box.setAttribute("aria-label", box.placeholder + (label ? ": " + label : ""));
    box.setAttribute("aria-controls", select.id);
    box.addEventListener("input", function () {
      var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
      var chosen = select.value;
      select.textContent = "";
      all.forEach(function (option) {
        var text = option.textContent.toLowerCase();
        var keep = option.value === "" || option.value === chosen ||
          words.every(function (word) { return text.indexOf(word) !== -1; });
        if (keep) select.appendChild(option);
      });
      select.value = chosen;
    });
    select.parentNode.insertBefore(box, select);
  });
})();

// A choice that changes the rest of the form shows the new form at once (the button marked data-refresh-for clicks
// itself when that choice changes); without this file the button is there to press.
(function () {
  "use strict";
  document.querySelectorAll("button[data-refresh-for]").forEach(function (button) {
    var group = document.getElementById(button.getAttribute("data-refresh-for"));
    if (!group) return;
    button.parentNode.hidden = true;
    group.addEventListener("change", function () { button.click(); });
  });
})();
