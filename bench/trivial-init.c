/* The smallest possible init: flush and reboot at once. With the kernel's
 * reboot=t and QEMU's -no-reboot this ends the VM, so booting a kernel with
 * it measures the bare boot time of that kernel. */
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
    sync();
    reboot(RB_AUTOBOOT);
    return 0;
}
