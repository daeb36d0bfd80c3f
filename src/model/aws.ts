// The AWS resource model's constants, shared by the compiler and the driver: where datagrant's
// objects live and how they are marked.

/** The IAM path that is datagrant's ownership boundary unless the backend names another. */
export const DEFAULT_IAM_PATH = '/datagrant/';
/** Tag on every IAM user datagrant makes. */
export const MANAGED_TAG = 'datagrant:managed';
/** The tag naming the installation (state) an IAM user belongs to. */
export const INSTALLATION_TAG = 'datagrant:installation';
