package sshtest

import (
	"context"
	"fmt"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// ServeSFTP is the SubsystemHandler of the "sftp" subsystem: an SFTP server
// (github.com/pkg/sftp) on the file system as the test process sees it,
// with its permissions, as OpenSSH's internal-sftp without a chroot. It
// returns when the client ends the session or ctx is done.
func ServeSFTP(ctx context.Context, meta ssh.ConnMetadata, ch ssh.Channel) error {
	srv, err := sftp.NewServer(ch)
	if err != nil {
		return fmt.Errorf("sshtest: sftp: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()
	if err := srv.Serve(); err != nil {
		return fmt.Errorf("sshtest: sftp: %w", err)
	}
	return nil
}
