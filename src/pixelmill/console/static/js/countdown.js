// "29:41 left to answer": the time a task may wait in MODAL; returns a function that stops it.
export function countdown(el, deadline) {
  const tick = () => {
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    el.textContent = left ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left, then the task is cancelled and refunded` : "time is up: the task is cancelled and refunded";
  };
  tick();
  const timer = setInterval(tick, 1000);
  return () => clearInterval(timer);
}
