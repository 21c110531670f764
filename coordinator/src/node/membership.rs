//! Changing who is in the cluster: learners, voters, removal — one change at a time.

use std::collections::BTreeSet;

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use sluice_common::problem::{ErrorCode, Problem};

use serde::Serialize;

use super::{Attempt, Empty, Node, ProposeError};
use crate::raft::NodeId;

impl Node {
    /// Adds a node as a learner (waiting for it to catch up), then, if asked, as a voter.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: String,
        voter: bool,
    ) -> Result<(), ProposeError> {
        #[derive(Serialize, Clone)]
        struct Add {
            id: NodeId,
            addr: String,
            voter: bool,
        }
        let body = Add {
            id,
            addr: addr.clone(),
            voter,
        };
        self.bounded(
            || async {
                self.may_change_membership().await?;
                match self
                    .raft
                    .add_learner(id, BasicNode::new(addr.clone()), true)
                    .await
                {
                    Ok(_) => {}
                    Err(e) => return self.membership_error(e),
                }
                if voter {
                    self.may_change_membership().await?;
                    let mut voters = self.voters();
                    voters.insert(id);
                    if let Err(e) = self.raft.change_membership(voters, false).await {
                        return self.membership_error(e);
                    }
                }
                Ok(Attempt::Done(()))
            },
            |leader| {
                let body = body.clone();
                async move {
                    self.forward::<_, Empty>(&leader, "/internal/v1/members", &body)
                        .await
                        .map(|_| ())
                }
            },
        )
        .await
    }

    /// Removes a node from the cluster.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), ProposeError> {
        self.bounded(
            || async {
                self.may_change_membership().await?;
                let mut voters = self.voters();
                let all: BTreeSet<NodeId> = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect();
                if !all.contains(&id) {
                    return Err(ProposeError::Rejected(Box::new(Problem::new(
                        ErrorCode::NotFound,
                        format!("node {id} is not a member"),
                    ))));
                }
                voters.remove(&id);
                if voters.is_empty() {
                    return Err(ProposeError::Rejected(Box::new(Problem::new(
                        ErrorCode::Conflict,
                        "cannot remove the last voter",
                    ))));
                }
                match self.raft.change_membership(voters, false).await {
                    Ok(_) => Ok(Attempt::Done(())),
                    Err(e) => self.membership_error(e),
                }
            },
            |leader| async move {
                self.forward::<_, Empty>(&leader, &format!("/internal/v1/members/{id}/remove"), &())
                    .await
                    .map(|_| ())
            },
        )
        .await
    }

    /// Refuses a membership change this node must not start: one while another is still
    /// being committed (openraft would queue or reject it in ways that have panicked its
    /// core), or one on a leader that the membership no longer counts as a voter (it
    /// removed itself; it is on its way out and must not change the cluster any more).
    /// A change committed a moment ago (a learner just added, about to be promoted) is
    /// waited for, briefly, rather than refused. On a voting follower this passes: the
    /// change is forwarded and the leader decides.
    async fn may_change_membership(&self) -> Result<(), ProposeError> {
        let settled = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
            let applied = m.last_applied.map_or(0, |l| l.index);
            let at = m.membership_config.log_id().map_or(0, |l| l.index);
            at <= applied && m.membership_config.membership().get_joint_config().len() <= 1
        };
        let not_a_voter = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
            !m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.id)
        };
        let m = self.raft.metrics().borrow().clone();
        // Whatever state it is in now (a removed leader steps down on its own schedule),
        // a node the membership no longer counts as a voter never calls into openraft's
        // membership API: that is what panicked its core.
        if not_a_voter(&m) {
            return Err(ProposeError::Rejected(Box::new(Problem::new(
                ErrorCode::NotAVoter,
                format!(
                    "node {} is not a voting member (it was removed, or is a learner); send membership changes to a voting member",
                    self.id
                ),
            ))));
        }
        if m.state != openraft::ServerState::Leader {
            return Ok(());
        }
        if !settled(&m) {
            let waited = self
                .raft
                .wait(Some(self.request_timeout / 2))
                .metrics(settled, "the last membership change applied")
                .await;
            if waited.is_err() {
                let at = m.membership_config.log_id().map_or(0, |l| l.index);
                return Err(ProposeError::Rejected(Box::new(Problem::new(
                    ErrorCode::MembershipChangeInProgress,
                    format!(
                        "the membership change at log index {at} is not committed yet; retry once it is"
                    ),
                ))));
            }
            if not_a_voter(&self.raft.metrics().borrow()) {
                return Err(ProposeError::Rejected(Box::new(Problem::new(
                    ErrorCode::NotAVoter,
                    format!("node {} was removed from the voters meanwhile", self.id),
                ))));
            }
        }
        Ok(())
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    fn membership_error<T>(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> Result<Attempt<T>, ProposeError> {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Ok(self.where_to(&f)),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Err(
                ProposeError::Rejected(Box::new(Problem::new(ErrorCode::Conflict, e.to_string()))),
            ),
            RaftError::Fatal(f) => Err(ProposeError::Fatal(f.to_string())),
        }
    }
}
