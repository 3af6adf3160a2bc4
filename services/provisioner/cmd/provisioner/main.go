// Command provisioner runs the provisioner against a NATS server
// (--server), with the local provider's files in --data.
package main

import (
	"github.com/redblack/redblack/services/provisioner"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() { svcmain.Main(provisioner.Program()) }
