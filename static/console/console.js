// Keyboard operation, action dialogs and click-to-reveal for the review console.
(function () {
  "use strict";
  const REBLUR_SECONDS = 10;

  function typing(event) {
    const t = event.target;
    if (!t) return false;
    if (t.tagName === "INPUT") return !["radio", "checkbox", "button", "submit", "reset"].includes(t.type);
    return t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable;
  }
  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }
  function openDialog(id) {
    const dialog = document.getElementById(id);
    if (dialog && !dialog.open) {
      dialog.showModal();
      const first = dialog.querySelector("[autofocus]")
        || dialog.querySelector("input[type=radio]:checked, input:not([type=hidden]), textarea");
      if (first) first.focus();
    }
  }

  // Evidence selection (j/k) and reveal (v or click).
  const cards = Array.from(document.querySelectorAll(".evidence-card"));
  let selected = 0;
  function select(index) {
    if (!cards.length) return;
    selected = Math.max(0, Math.min(cards.length - 1, index));
    cards.forEach((card, i) => card.classList.toggle("selected", i === selected));
    cards[selected].focus({ preventScroll: false });
  }
  if (cards.length) cards[0].classList.add("selected");

  async function reveal(button) {
    const thumb = button.closest(".thumb");
    const img = thumb.querySelector("img");
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.reveal, {
        method: "POST", headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin", cache: "no-store",
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const url = URL.createObjectURL(await response.blob());
      img.src = url;
      thumb.classList.add("revealed");
      let left = Number(button.dataset.seconds) || REBLUR_SECONDS;
      button.textContent = "Re-blur in " + left + " s";
      const timer = setInterval(() => {
        left -= 1;
        button.textContent = "Re-blur in " + left + " s";
        if (left <= 0) {
          clearInterval(timer);
          img.src = img.dataset.blurred;
          URL.revokeObjectURL(url);
          thumb.classList.remove("revealed");
          button.innerHTML = "Reveal <kbd>v</kbd>";
          button.disabled = false;
        }
      }, 1000);
    } catch (err) {
      button.textContent = "Reveal failed";
      button.disabled = false;
    }
  }
  // The first reveal of a session asks once; the warning is part of looking after reviewers.
  let pendingReveal = null;
  function askThenReveal(button) {
    const warning = document.getElementById("reveal-warning");
    if (!warning || sessionStorage.getItem("reveal-warned")) { reveal(button); return; }
    pendingReveal = button;
    warning.showModal();
  }
  const confirmButton = document.querySelector("[data-reveal-confirm]");
  if (confirmButton) confirmButton.addEventListener("click", () => {
    sessionStorage.setItem("reveal-warned", "1");
    document.getElementById("reveal-warning").close();
    if (pendingReveal) reveal(pendingReveal);
    pendingReveal = null;
  });
  document.querySelectorAll("[data-reveal]").forEach((b) => b.addEventListener("click", () => askThenReveal(b)));

  document.querySelectorAll("[data-dialog]").forEach((b) => b.addEventListener("click", () => openDialog(b.dataset.dialog)));
  document.querySelectorAll("dialog [data-close]").forEach((b) => b.addEventListener("click", () => b.closest("dialog").close()));
  document.querySelectorAll("[data-help-open]").forEach((b) => b.addEventListener("click", () => openDialog("help")));

  // One submit per form: a double click or key repeat sends the decision once.
  document.querySelectorAll("form").forEach((form) => form.addEventListener("submit", (event) => {
    if (form.dataset.sent) { event.preventDefault(); return; }
    form.dataset.sent = "1";
  }));

  // The undo offer disappears when its window closes.
  const undoBar = document.querySelector(".undo-bar");
  if (undoBar) {
    let left = Number(undoBar.dataset.expires);
    const countdown = undoBar.querySelector("[data-countdown]");
    const tick = setInterval(() => {
      left -= 1;
      if (countdown) countdown.textContent = left + " s";
      if (left <= 0) { clearInterval(tick); undoBar.remove(); }
    }, 1000);
  }

  // Presence: tell the server this case is open, and show who else has it open. Loading the page
  // (a GET) records nothing, so the first report goes out at once, then every 30 s.
  const viewers = document.getElementById("viewers");
  if (viewers) {
    const reportPresence = async () => {
      try {
        const response = await fetch(viewers.dataset.viewing, { method: "POST", headers: { "X-CSRFToken": csrfToken() } });
        const body = await response.json();
        viewers.textContent = body.others.length ? "Also viewing: " + body.others.join(", ") : "";
      } catch (err) { /* presence is a courtesy; never block review on it */ }
    };
    reportPresence();
    setInterval(reportPresence, 30000);
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const dialog = document.querySelector("dialog[open]");
    if (dialog) {
      if (dialog.classList.contains("act-dialog") && /^[1-9]$/.test(event.key) && !typing(event)) {
        const radios = dialog.querySelectorAll("input[type=radio]");
        const choice = radios[Number(event.key) - 1];
        if (choice) {
          choice.checked = true;
          event.preventDefault();
          const form = choice.form;
          if (form.reportValidity()) form.requestSubmit();
        }
      }
      return;
    }
    if (typing(event)) return;
    if (event.key === "?") { openDialog("help"); event.preventDefault(); return; }
    if (event.key === "j") { select(selected + 1); event.preventDefault(); return; }
    if (event.key === "k") { select(selected - 1); event.preventDefault(); return; }
    if (event.key === "v" && cards.length) {
      const button = cards[selected].querySelector("[data-reveal]");
      if (button && !button.disabled) askThenReveal(button);
      event.preventDefault();
      return;
    }
    const target = document.querySelector('[data-key="' + CSS.escape(event.key) + '"]');
    if (target) { event.preventDefault(); target.click(); }
  });
})();
