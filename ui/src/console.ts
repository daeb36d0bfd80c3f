// Every console page: the colour theme switch. The page follows the system's light or dark
// setting until someone picks one; the choice is kept in this browser only.
const KEY = 'datagrant-theme';
const THEMES = ['auto', 'dark', 'light'] as const;
type Theme = (typeof THEMES)[number];

function stored(): Theme {
  try {
    const t = localStorage.getItem(KEY);
    return (THEMES as readonly string[]).includes(t ?? '') ? (t as Theme) : 'auto';
  } catch {
    return 'auto';
  }
}

function apply(theme: Theme, button: HTMLButtonElement | null): void {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  if (button) {
    button.textContent = `Theme: ${theme}`;
    button.title = theme === 'auto' ? 'Follows the system; click for dark' : `Click for ${theme === 'dark' ? 'light' : 'the system’s theme'}`;
  }
}

const button = document.getElementById('theme') as HTMLButtonElement | null;
let theme = stored();
apply(theme, button);
if (button) {
  button.hidden = false;
  button.addEventListener('click', () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length]!;
    try {
      if (theme === 'auto') localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, theme);
    } catch {
      // storage may be off: the choice then lasts for this page only
    }
    apply(theme, button);
  });
}

export {};
