/* agent - placeholder until the agent lands. */
#include <taskwatch.h>

const char *tw_version(void) { return TW_VERSION_STRING; }
