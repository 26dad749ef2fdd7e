/* A test that crashes: one passing assertion, then a null pointer write. */
#include <stdio.h>

int main(void)
{
    volatile int *volatile p = NULL; /* both volatile, or the store is dropped */

    printf("1..2\n");
    printf("ok 1 - before the crash\n");
    fflush(stdout);
    *p = 42;
    printf("ok 2 - never reached\n");
    return 0;
}
