/* A 64-bit program making a 32-bit (i386) syscall with int $0x80: getpid is 20 there. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    long result = 20;
    __asm__ volatile("int $0x80" : "+a"(result) : : "memory");
    if (result != (long)getpid()) {
        printf("int80 getpid %ld != %ld\n", result, (long)getpid());
        return 1;
    }
    printf("int80 getpid ok\n");
    return 0;
}
