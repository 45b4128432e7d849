#include <signal.h>
#include <unistd.h>
#include <stdlib.h>
static void quit(int s) { (void)s; _exit(0); }
int main(void) { signal(SIGINT, quit); signal(SIGTERM, quit); for (;;) pause(); }
