import { harness } from './helpers.js';
import { idpSequences } from './idp-sequences.js';

idpSequences(() => harness());
