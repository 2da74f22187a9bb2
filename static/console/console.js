// Keyboard operation, action dialogs, click-to-reveal and hide-now for the review console.
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

  // A revealed item: its object URL, its re-blur timer, and the alternative text to put back.
  const revealedThumbs = new Map();
  function revealControls(thumb, shown) {
    thumb.querySelectorAll("[data-hide], [data-larger]").forEach((b) => { b.hidden = !shown; });
  }
  function setLarger(thumb, on) {
    const toggle = thumb.querySelector("[data-larger]");
    if (toggle) toggle.setAttribute("aria-pressed", String(on));
    const card = thumb.closest(".evidence-card");
    if (card) card.classList.toggle("larger", on);
  }
  // Blur again at once: the "Hide now" button, the h key, and the end of the countdown.
  function hide(thumb) {
    const state = revealedThumbs.get(thumb);
    if (!state) return;
    revealedThumbs.delete(thumb);
    state.cancelled = true; // a reveal still loading is never shown
    clearInterval(state.timer);
    const hadFocus = thumb.contains(document.activeElement);
    const img = thumb.querySelector("img");
    img.src = img.dataset.blurred;
    img.alt = state.alt;
    if (state.url) URL.revokeObjectURL(state.url);
    thumb.classList.remove("revealed");
    setLarger(thumb, false);
    revealControls(thumb, false);
    const button = thumb.querySelector("[data-reveal]");
    button.innerHTML = "Reveal <kbd>v</kbd>";
    button.disabled = false;
    if (hadFocus) button.focus();
  }
  function hideAll() {
    Array.from(revealedThumbs.keys()).forEach(hide);
  }

  async function reveal(button) {
    const thumb = button.closest(".thumb");
    if (revealedThumbs.has(thumb)) return;
    const img = thumb.querySelector("img");
    const state = { alt: img.alt, url: null, timer: null, cancelled: false };
    revealedThumbs.set(thumb, state);
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.reveal, {
        method: "POST", headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin", cache: "no-store",
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const blob = await response.blob();
      if (state.cancelled) return;
      state.url = URL.createObjectURL(blob);
      img.src = state.url;
      const card = thumb.closest(".evidence-card");
      img.alt = "Item " + (card ? card.dataset.item : "") + " unblurred (revealed, recorded)";
      thumb.classList.add("revealed");
      revealControls(thumb, true);
      let left = Number(button.dataset.seconds) || REBLUR_SECONDS;
      button.textContent = "Re-blur in " + left + " s";
      state.timer = setInterval(() => {
        left -= 1;
        if (left <= 0) hide(thumb);
        else button.textContent = "Re-blur in " + left + " s";
      }, 1000);
    } catch (err) {
      if (state.cancelled) return;
      revealedThumbs.delete(thumb);
      button.textContent = "Reveal failed";
      button.disabled = false;
    }
  }
  document.querySelectorAll("[data-hide]").forEach((b) => b.addEventListener("click", () => hide(b.closest(".thumb"))));
  document.querySelectorAll("[data-larger]").forEach((b) => b.addEventListener("click", () => {
    setLarger(b.closest(".thumb"), b.getAttribute("aria-pressed") !== "true");
  }));

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
    // Hide now works everywhere, a dialog open or not, except while typing.
    if (event.key === "h" && revealedThumbs.size && !typing(event)) { hideAll(); event.preventDefault(); return; }
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
    if (event.key === "/") {
      const box = document.querySelector("[data-search-box]");
      if (box) { box.focus(); box.select(); event.preventDefault(); }
      return;
    }
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
