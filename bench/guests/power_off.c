/* The VM-churn guest: powers off at once (start.S does it when guest_main
 * returns), so a run is the VM's set-up, one entry and one exit. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) { (void)boot_params; }
