// Keyboard scoring for the review page. The page works without this file: every score is a
// radio button and every action a button. Keys never fire while typing in a text field.
(function () {
  "use strict";

  function work() { return document.getElementById("work"); }
  function answers() { return Array.from(document.querySelectorAll("#work [data-answer]")); }
  function current() { return document.querySelector("#work [data-answer].current") || answers()[0]; }

  function focusAnswer(answer) {
    if (!answer) return;
    answers().forEach(function (a) { a.classList.toggle("current", a === answer); });
    answer.focus({ preventScroll: true });
    answer.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  function move(step) {
    var list = answers();
    var index = list.indexOf(current());
    focusAnswer(list[Math.max(0, Math.min(list.length - 1, index + step))]);
  }

  function score(value) {
    var answer = current();
    if (!answer) return;
    var input = answer.querySelector('input[type=radio][value="' + value + '"]');
    if (!input) return;
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    // Go on to the next answer that has no score yet.
    var next = answers().find(function (a) { return !a.querySelector("input[type=radio]:checked"); });
    if (next) focusAnswer(next);
  }

  // A real click, so the browser (and htmx) see which button submitted the form and honour
  // the skip button's formnovalidate.
  function press(name) {
    var button = document.querySelector('#work form.scoring button[name="' + name + '"]');
    if (button) button.click();
  }

  function toggleHelp() {
    var dialog = document.getElementById("help-dialog");
    if (!dialog) return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  document.addEventListener("keydown", function (event) {
    if (!work() || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var typing = target && (target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
      (target.tagName === "INPUT" && target.type !== "radio"));
    if (typing) {
      if (event.key === "Escape") { target.blur(); focusAnswer(target.closest("[data-answer]")); }
      return;
    }
    var key = event.key;
    if (/^[0-9]$/.test(key)) { score(key); }
    else if (key === "t" || key === "T") { score("10"); }
    // J next and K previous, as in mail readers, pagers and code review tools.
    else if (key === "ArrowRight" || key === "j" || key === "J") { move(1); }
    else if (key === "ArrowLeft" || key === "k" || key === "K") { move(-1); }
    else if (key === "Enter") {
      // After a calibration item, Enter goes on to the next item.
      var next = document.querySelector("#work [data-continue]");
      if (next) next.click(); else press("submit");
    }
    else if (key === "s" || key === "S") { press("skip"); }
    else if (key === "c" || key === "C") {
      var box = current() && current().querySelector("textarea");
      if (box) box.focus();
    }
    else if (key === "u" || key === "U") {
      var url = work().dataset.undo;
      if (url) window.location.assign(url);
    }
    else if (key === "?") { toggleHelp(); }
    else { return; }
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-help]")) toggleHelp();
    var answer = event.target.closest("#work [data-answer]");
    if (answer) answers().forEach(function (a) { a.classList.toggle("current", a === answer); });
  });

  // After htmx swaps in the next item, start again at its first answer.
  document.body.addEventListener("htmx:afterSwap", function () { focusAnswer(answers()[0]); });
})();
