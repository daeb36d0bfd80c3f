import { silenceSdkNodeVersionWarning } from '../src/app/warnings.js';

// The same filter the CLI installs: one known warning of the pinned AWS SDK, nothing else.
silenceSdkNodeVersionWarning();
