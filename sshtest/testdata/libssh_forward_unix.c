/*
 * libssh_forward_unix connects to an SSH server with libssh, checks its
 * host key against a known_hosts file, logs in with a key, opens a
 * direct-streamlocal channel to a Unix socket with
 * ssh_channel_open_forward_unix, sends a line and prints what comes back
 * before EOF. sshtest's tests run it against the server.
 *
 * usage: libssh_forward_unix HOST PORT USER KEY KNOWN_HOSTS SOCKET MESSAGE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/libssh.h>

static int fail(ssh_session s, const char *what) {
	fprintf(stderr, "%s: %s\n", what, ssh_get_error(s));
	return 1;
}

int main(int argc, char **argv) {
	if (argc != 8) {
		fprintf(stderr, "usage: %s HOST PORT USER KEY KNOWN_HOSTS SOCKET MESSAGE\n", argv[0]);
		return 2;
	}
	unsigned int port = (unsigned int)atoi(argv[2]);
	ssh_session s = ssh_new();
	if (s == NULL)
		return 1;
	ssh_options_set(s, SSH_OPTIONS_HOST, argv[1]);
	ssh_options_set(s, SSH_OPTIONS_PORT, &port);
	ssh_options_set(s, SSH_OPTIONS_USER, argv[3]);
	ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, argv[5]);
	ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
	if (ssh_connect(s) != SSH_OK)
		return fail(s, "connect");
	if (ssh_session_is_known_server(s) != SSH_KNOWN_HOSTS_OK)
		return fail(s, "host key");

	ssh_key key = NULL;
	if (ssh_pki_import_privkey_file(argv[4], NULL, NULL, NULL, &key) != SSH_OK)
		return fail(s, "key");
	if (ssh_userauth_publickey(s, NULL, key) != SSH_AUTH_SUCCESS)
		return fail(s, "auth");
	ssh_key_free(key);

	ssh_channel ch = ssh_channel_new(s);
	if (ch == NULL || ssh_channel_open_forward_unix(ch, argv[6], "127.0.0.1", 0) != SSH_OK)
		return fail(s, "ssh_channel_open_forward_unix");
	size_t n = strlen(argv[7]);
	if (ssh_channel_write(ch, argv[7], (uint32_t)n) != (int)n || ssh_channel_send_eof(ch) != SSH_OK)
		return fail(s, "write");
	char buf[4096];
	int got;
	while ((got = ssh_channel_read(ch, buf, sizeof buf, 0)) > 0)
		fwrite(buf, 1, (size_t)got, stdout);
	if (got < 0)
		return fail(s, "read");
	ssh_channel_close(ch);
	ssh_channel_free(ch);
	ssh_disconnect(s);
	ssh_free(s);
	return 0;
}
