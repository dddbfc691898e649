/* A UDP echo server for the test image (busybox's nc has no UDP): udpecho PORT */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 7;
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        return 1;
    for (;;) {
        char buf[2048];
        struct sockaddr_in6 from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n > 0)
            sendto(fd, buf, n, 0, (struct sockaddr *)&from, len);
    }
}
