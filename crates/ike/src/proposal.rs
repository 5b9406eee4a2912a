//! Algorithm proposals: strongSwan keyword syntax and proposal selection.
