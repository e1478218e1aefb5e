/* netprobe: what a container can reach on the host's addresses.
 *
 *   netprobe tcp IP PORT
 *       connect (2 s at most); prints "ok" or the errno's name.
 *   netprobe frame IFACE DSTMAC DSTIP PORT TEXT
 *       sends TEXT as one UDP datagram to DSTIP:PORT in an Ethernet frame made
 *       by hand (AF_PACKET, CAP_NET_RAW, which a default container has) and
 *       addressed to DSTMAC: no route of the container's is consulted, so this
 *       is how an attacker reaches what routing alone would keep out of reach.
 *       Prints "sent" or the errno's name.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *name(int e)
{
    switch (e) {
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    default: return strerror(e);
    }
}

static int tcp(const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), err = 0;
    socklen_t len = sizeof err;
    inet_pton(AF_INET, ip, &sa.sin_addr);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno != EINPROGRESS) {
            printf("%s\n", name(errno));
            return 1;
        }
        struct pollfd p = {.fd = s, .events = POLLOUT};
        if (poll(&p, 1, 2000) != 1) {
            printf("ETIMEDOUT\n");
            return 1;
        }
        getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            printf("%s\n", name(err));
            return 1;
        }
    }
    printf("ok\n");
    return 0;
}

static unsigned short csum(const void *buf, int len)
{
    const unsigned short *w = buf;
    unsigned long sum = 0;
    for (; len > 1; len -= 2)
        sum += *w++;
    sum = (sum >> 16) + (sum & 0xffff);
    sum += sum >> 16;
    return ~sum;
}

static int frame(const char *iface, const char *dmac, const char *dst, int port, const char *text)
{
    unsigned char buf[1500] = {0}, *ip = buf + 14, *udp = ip + 20;
    size_t n = strlen(text);
    struct ifreq ifr = {0};
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_halen = 6};
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (s < 0 || n > 1000) {
        printf("%s\n", name(s < 0 ? errno : EINVAL));
        return 1;
    }
    strncpy(ifr.ifr_name, iface, IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
        printf("%s\n", name(errno));
        return 1;
    }
    ll.sll_ifindex = ifr.ifr_ifindex;
    sscanf(dmac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &buf[0], &buf[1], &buf[2], &buf[3], &buf[4], &buf[5]);
    memcpy(ll.sll_addr, buf, 6);
    ioctl(s, SIOCGIFHWADDR, &ifr);
    memcpy(buf + 6, ifr.ifr_hwaddr.sa_data, 6);
    buf[12] = 0x08;                                   /* IPv4 */
    ioctl(s, SIOCGIFADDR, &ifr);                      /* our own address as source */
    ip[0] = 0x45;
    ip[2] = (20 + 8 + n) >> 8;
    ip[3] = (20 + 8 + n) & 0xff;
    ip[8] = 64;                                       /* TTL */
    ip[9] = IPPROTO_UDP;
    memcpy(ip + 12, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, 4);
    inet_pton(AF_INET, dst, ip + 16);
    unsigned short c = csum(ip, 20);
    memcpy(ip + 10, &c, 2);
    udp[0] = 40000 >> 8, udp[1] = 40000 & 0xff;       /* source port; checksum 0: none */
    udp[2] = port >> 8, udp[3] = port & 0xff;
    udp[4] = (8 + n) >> 8, udp[5] = (8 + n) & 0xff;
    memcpy(udp + 8, text, n);
    if (sendto(s, buf, 14 + 20 + 8 + n, 0, (struct sockaddr *)&ll, sizeof ll) < 0) {
        printf("%s\n", name(errno));
        return 1;
    }
    printf("sent\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "tcp"))
        return tcp(argv[2], atoi(argv[3]));
    if (argc == 7 && !strcmp(argv[1], "frame"))
        return frame(argv[2], argv[3], argv[4], atoi(argv[5]), argv[6]);
    fprintf(stderr, "usage: netprobe tcp IP PORT | frame IFACE DSTMAC DSTIP PORT TEXT\n");
    return 2;
}
