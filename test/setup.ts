import { silenceSdkNodeVersionWarning } from '../src/cli/warnings.js';

// The same filter the CLI installs: one known warning of the pinned AWS SDK, nothing else.
silenceSdkNodeVersionWarning();
