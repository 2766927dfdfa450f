"""One module per chapter: functions that return a ready `vgcourse.widgets.Explorer`."""
