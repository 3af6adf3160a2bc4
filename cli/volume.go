package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/provisioner/local"
	"github.com/redblack/redblack/shared/subjects"
)

// volumeCmd lists and destroys a stateful service's volumes: on this
// machine (the local provider's <data>/volumes/<service>/<slot>), or, with
// --provider aws, its EBS volumes (tagged redblack:service and
// redblack:slot). Destroying is the one way a slot's data goes: no
// release, rollback, Chaos Monkey kill or group destroy ever deletes it.
func (a *app) volumeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "A stateful service's volumes (strategy rolling): list, destroy"}
	var data, provider string
	localConfig := func() local.Config { return local.Config{Dir: filepath.Join(data, "local")} }
	useAWS := func() (bool, error) {
		if provider != "local" && provider != "aws" {
			return false, fmt.Errorf("--provider %q: want local or aws", provider)
		}
		return provider == "aws", nil
	}
	ls := &cobra.Command{
		Use:   "ls SERVICE [--data DIR | --provider aws]",
		Short: "List a stateful service's volumes, one per slot, with their size",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := subjects.ValidateService(args[0]); err != nil {
				return err
			}
			onAWS, err := useAWS()
			if err != nil {
				return err
			}
			if onAWS {
				return a.lsAWS(cmd, args[0])
			}
			vols, err := local.Volumes(localConfig(), args[0])
			if err != nil {
				return err
			}
			if len(vols) == 0 {
				fmt.Fprintf(a.out, "%s has no volume under %s\n", args[0], data)
				return nil
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "SLOT\tBYTES\tPATH")
			for _, v := range vols {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", v.Slot, v.Bytes, v.Path)
			}
			return tw.Flush()
		},
	}
	var confirm string
	destroy := &cobra.Command{
		Use:   "destroy SERVICE --confirm SERVICE [--data DIR | --provider aws]",
		Short: "Delete every volume of a stateful service for good (its groups must be destroyed first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := subjects.ValidateService(service); err != nil {
				return err
			}
			if confirm != service {
				return fmt.Errorf("this deletes every slot's data of %s for good: repeat its name with --confirm %s", service, service)
			}
			onAWS, err := useAWS()
			if err != nil {
				return err
			}
			if onAWS {
				return a.destroyAWS(cmd, service)
			}
			gone, err := local.DestroyVolumes(localConfig(), service)
			if err != nil {
				return err
			}
			for _, v := range gone {
				fmt.Fprintf(a.out, "destroyed %s (%d bytes): %s\n", v.Slot, v.Bytes, v.Path)
			}
			if len(gone) == 0 {
				fmt.Fprintf(a.out, "%s has no volume under %s\n", service, data)
			}
			return nil
		},
	}
	destroy.Flags().StringVar(&confirm, "confirm", "", "the service's name again: nothing is deleted without it")
	cmd.PersistentFlags().StringVar(&data, "data", dataDir(), "redblack's data directory, as given to up (env REDBLACK_DATA)")
	cmd.PersistentFlags().StringVar(&provider, "provider", "local", "local (directories under --data) or aws (EBS volumes; credentials, region and AWS_ENDPOINT_URL from the standard AWS configuration)")
	cmd.AddCommand(ls, destroy)
	return cmd
}

// lsAWS lists the service's EBS slot volumes.
func (a *app) lsAWS(cmd *cobra.Command, service string) error {
	p, err := aws.New(cmd.Context(), aws.Config{})
	if err != nil {
		return err
	}
	vols, err := p.Volumes(cmd.Context(), service)
	if err != nil {
		return err
	}
	if len(vols) == 0 {
		fmt.Fprintf(a.out, "%s has no EBS volume\n", service)
		return nil
	}
	tw := newTable(a.out)
	fmt.Fprintln(tw, "SLOT\tVOLUME\tGiB\tZONE\tSTATE\tINSTANCE")
	for _, v := range vols {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", v.Slot, v.ID, v.SizeGiB, v.Zone, v.State, dash(v.Instance))
	}
	return tw.Flush()
}

// destroyAWS deletes the service's EBS slot volumes (refused while a group
// of it exists).
func (a *app) destroyAWS(cmd *cobra.Command, service string) error {
	p, err := aws.New(cmd.Context(), aws.Config{})
	if err != nil {
		return err
	}
	gone, err := p.DestroyVolumes(cmd.Context(), service)
	for _, v := range gone {
		fmt.Fprintf(a.out, "destroyed %s: %s\n", v.Slot, v.ID)
	}
	if err != nil {
		return err
	}
	if len(gone) == 0 {
		fmt.Fprintf(a.out, "%s has no EBS volume\n", service)
	}
	return nil
}
