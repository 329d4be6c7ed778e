from pkgedge.cli import main

raise SystemExit(main())
