package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

// Shell completion: cobra's `herald completion bash|zsh|fish|powershell`
// prints the script; topic and group names complete from Redis.

// completionTimeout bounds the Redis queries of one completion: a shell
// must never hang on a slow or unreachable Redis.
const completionTimeout = time.Second

// addCompletions walks the command tree and completes every TOPIC and GROUP
// argument named in a command's Use line, and the --group flag of commands
// that take a TOPIC, unless the command completes its arguments itself.
func addCompletions(root *cobra.Command, e *env) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		fields := strings.Fields(c.Use)
		if len(fields) < 2 {
			return
		}
		placeholders := fields[1:]
		topicAt := indexOf(placeholders, "TOPIC")
		if topicAt < 0 {
			return
		}
		if c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				switch {
				case len(args) == topicAt:
					return completeTopics(e, toComplete), cobra.ShellCompDirectiveNoFileComp
				case len(args) > topicAt && len(args) < len(placeholders) && placeholders[len(args)] == "GROUP":
					return completeGroups(e, args[topicAt], toComplete), cobra.ShellCompDirectiveNoFileComp
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		if c.Flags().Lookup("group") != nil {
			_ = c.RegisterFlagCompletionFunc("group", func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) <= topicAt {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return completeGroups(e, args[topicAt], toComplete), cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
	walk(root)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// completionClient connects for one completion; nil on any error.
func completionClient(ctx context.Context, e *env) *herald.Client {
	c, err := herald.New(ctx, herald.Config{URL: e.url(), Namespace: e.namespace})
	if err != nil {
		return nil
	}
	return c
}

// completeTopics returns the topic names starting with prefix; nothing
// when Redis does not answer within completionTimeout.
func completeTopics(e *env, prefix string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	c := completionClient(ctx, e)
	if c == nil {
		return nil
	}
	defer c.Close()
	topics, err := c.Topics(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range topics {
		if strings.HasPrefix(t.Name, prefix) {
			out = append(out, t.Name)
		}
	}
	return out
}

// completeGroups returns the group names of topic starting with prefix;
// nothing on any error.
func completeGroups(e *env, topic, prefix string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	c := completionClient(ctx, e)
	if c == nil {
		return nil
	}
	defer c.Close()
	groups, err := c.Groups(ctx, topic)
	if err != nil {
		return nil
	}
	var out []string
	for _, g := range groups {
		if strings.HasPrefix(g.Name, prefix) {
			out = append(out, g.Name)
		}
	}
	return out
}
